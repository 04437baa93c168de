"""Sandbox pods: each pod is a real OpenSSH `sshd` on its own 127.0.0.1 port.

Isolation, best first (chosen once per process by probing; `PodHost(isolation=...)` forces one):
- "namespace": `unshare --mount --pid --fork --mount-proc` (not being root: inside a user namespace, with sshd in
  a nested one mapping back to our own uid) runs sshd as the init of a new PID namespace, with the pod's workspace
  bind-mounted on `/workspace`. Every process an SSH session starts, detached or not, lives in that namespace, so
  stopping the pod is one SIGKILL of its init.
  When `/workspace` cannot be created on this machine, the namespace still isolates processes and the pod announces
  its workspace directory in PISTACHIO_WORKSPACE instead.
- "session": sshd in a session of its own; the pod's processes are the sshd tree plus every process whose
  environment carries the pod's marker (detached jobs keep it), PISTACHIO_WORKSPACE is the workspace directory.

The pod's main process is its container start command, as in a container runtime (RunPod's `dockerArgs` / REST
`args` replace the image's CMD): without one it is the image's default start, `start.sh` (here: sshd with the
pod's config; in runpod/containers `official-templates/base/Dockerfile` ends with `CMD ["/start.sh"]` and
`container-template/start.sh` sets up sshd from PUBLIC_KEY, at commit 6990d3773d180d0270d534a6e532c997dc629060).
With a start command the command is the main process (split like a shell would, run with the pod env and `/` as
cwd), and nothing else starts: a command that wants SSH starts sshd itself, or ends with `exec $PISTACHIO_START_SH`
(also bind-mounted on `/start.sh` in the pod where that path can be made a mount point), the image's default start.
In "namespace" isolation each pod also has its own UTS namespace: `hostname` in a pod answers its pod id.

Each SSH session sees the env the server passes (RUNPOD_* and PUBLIC_KEY), PISTACHIO_WORKSPACE, PATH with the pod
image first, and HOME = a per-pod home (fresh at each start, like a container disk) whose git config allows
file:// submodules, which the stand-in diffusion-pipe repo uses.

Files per pod under `<root>/pods/<pod_id>/`: sshd_config, host key, authorized_keys, home/, start.sh, pod.json and
sshd.log (the container log: what the main process writes).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Literal

from ..errors import MissingToolError
from .image import PodImage

SSHD = "/usr/sbin/sshd"
WORKSPACE = Path("/workspace")
START_SH = Path("/start.sh")  # where RunPod's official images keep their default start (see the module doc)
START_ENV = "PISTACHIO_START_SH"  # announces the pod's default start script to the pod's processes
MARKER = "PISTACHIO_SANDBOX_POD"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Isolation = Literal["auto", "namespace", "session"]

GITCONFIG = """\
[protocol "file"]
\tallow = always
[init]
\tdefaultBranch = main
[advice]
\tdetachedHead = false
"""


class PodStartError(RuntimeError):
    """sshd for a pod did not come up (bad config, port taken, …)."""


def _sshd_path() -> str:
    path = shutil.which("sshd") or (SSHD if os.path.exists(SSHD) else None)
    if not path:
        raise MissingToolError("the sandbox needs OpenSSH's sshd, which is not installed",
                               "install it (Debian/Ubuntu: `apt-get install openssh-server`)")
    return path


def pod_user() -> str:
    """The one user the pods' sshd accepts: the user this process runs as (sshd runs as it; root on RunPod)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def _unshare_args() -> list[str]:
    """New mount + PID namespaces; not being root, inside a user namespace where we are root (for the mount)."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child"]


# Runs as the namespace's init: sets the pod's hostname ($1), bind-mounts the workspace ($2) and the default start
# script on /start.sh ($3), gives the pod a /tmp of its own (a tmpfs that ends with the namespace, as a container's
# does; the sandbox's own folders under the host's /tmp, $4 ':'-separated, stay visible at their paths; a machine
# that refuses the mounts keeps the shared /tmp), then becomes the pod's main process (sshd, or the start command).
# Not being root, that runs in a nested user namespace that maps us back to our own uid, so sshd logs in this user
# without privilege separation. Arguments: hostname, workspace dir or "", start script or "", kept /tmp paths, uid,
# gid, main command...
NAMESPACE_INIT = """\
set -e
[ -z "$1" ] || echo "$1" 2>/dev/null > /proc/sys/kernel/hostname || true  # a read-only /proc/sys: host's name
[ -z "$2" ] || mount --bind "$2" /workspace
[ -z "$3" ] || mount --bind "$3" /start.sh
if [ -n "$4" ] && [ -d /mnt ] && mount --rbind /tmp /mnt 2>/dev/null; then
  if mount -t tmpfs -o mode=1777 pod-tmp /tmp; then
    IFS=:
    for keep in $4; do
      [ -n "$keep" ] || continue
      mkdir -p "$keep" 2>/dev/null && mount --rbind "/mnt${keep#/tmp}" "$keep" 2>/dev/null || true  # gone since listed
    done
    unset IFS
  fi
  umount -l /mnt
fi
shift 4
if [ "$(id -u)" = "$1" ]; then shift 2; exec "$@"; fi
uid=$1 gid=$2; shift 2
exec unshare --user --map-user="$uid" --map-group="$gid" -- "$@"
"""


@functools.cache
def namespaces_work() -> bool:
    """Whether this machine lets us create mount + PID namespaces (as root, or through a user namespace)."""
    if not shutil.which("unshare"):
        return False
    try:
        result = subprocess.run([*_unshare_args(), "/bin/sh", "-c", NAMESPACE_INIT, "probe", "probe", "", "", "",
                                 str(os.getuid()), str(os.getgid()), "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _workspace_mountpoint() -> bool:
    """Whether /workspace exists (or can be made) as an empty mount point for the pods' bind mounts."""
    with contextlib.suppress(OSError):
        WORKSPACE.mkdir(exist_ok=True)
    return WORKSPACE.is_dir()


def _start_sh_mountpoint() -> bool:
    """Whether /start.sh exists (or can be made, empty) as a mount point for the pods' default start script."""
    if not START_SH.exists():
        with contextlib.suppress(OSError):
            START_SH.touch(mode=0o644)
    return START_SH.is_file()


# ---- /proc helpers -------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, session id, start time) of a live process, None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    state = fields[0]
    if state in ("Z", "X"):
        return None
    return state, int(fields[1]), int(fields[3]), int(fields[19])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _listening(port: int) -> bool:
    """Whether a socket listens on 127.0.0.1:port (from /proc/net/tcp: local address hex, state 0A = LISTEN)."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell; the handshake check or the client will
    return any(fields[1] in wanted and fields[3] == "0A" for fields in (line.split() for line in lines))


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# ---- the pod host --------------------------------------------------------------------------------------------


class PodHost:
    def __init__(self, root: Path, image: PodImage, isolation: Isolation = "auto") -> None:
        self.root = Path(root)
        self.image = image
        if isolation == "auto":
            isolation = "namespace" if namespaces_work() else "session"
        self.isolation = isolation
        self._procs: dict[str, subprocess.Popen] = {}

    # -- paths and records

    def pod_dir(self, pod_id: str) -> Path:
        return self.root / "pods" / pod_id

    def _record(self, pod_id: str) -> dict | None:
        try:
            return json.loads((self.pod_dir(pod_id) / "pod.json").read_text())
        except (OSError, ValueError):
            return None

    def workspace_path(self, pod_id: str) -> str | None:
        """What PISTACHIO_WORKSPACE says inside the pod: "/workspace" or the workspace directory."""
        record = self._record(pod_id)
        return record["workspace_path"] if record else None

    # -- lifecycle

    def start(self, pod_id: str, *, ssh_port: int, public_key: str, env: dict[str, str], workspace: Path,
              start_cmd: str | None = None, wait: bool = True, timeout: float = 10.0) -> None:
        """Starts the pod's main process (stopping any earlier one of this pod): `start_cmd` when given (a container
        start command, split like a shell does), else the default start (sshd). With `wait`, returns once SSH
        answers (with a start command: once the main process runs, since only the command knows whether SSH comes)."""
        argv = shlex.split(start_cmd) if start_cmd and start_cmd.strip() else None
        self.stop(pod_id)
        sshd = _sshd_path()
        pod = self.pod_dir(pod_id)
        workspace = Path(workspace).resolve()
        workspace.mkdir(parents=True, exist_ok=True)
        home = pod / "home"
        shutil.rmtree(home, ignore_errors=True)
        (home / ".ssh").mkdir(parents=True)
        (home / ".gitconfig").write_text(GITCONFIG)
        host_key = pod / "ssh_host_ed25519_key"
        if not host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pod-{pod_id}", "-f",
                            str(host_key)], check=True, capture_output=True)
        authorized = pod / "authorized_keys"
        authorized.write_text(public_key.strip() + "\n")
        authorized.chmod(0o600)

        namespaced = self.isolation == "namespace"
        mount = namespaced and _workspace_mountpoint()
        mount_start = namespaced and _start_sh_mountpoint()
        workspace_path = str(WORKSPACE) if mount else str(workspace)
        start_sh = pod / "start.sh"
        token = uuid.uuid4().hex
        container_bin = self.image.container(pod / "container")  # the pod's own Python (pip installs land there)
        session_env = {
            **env,
            "PUBLIC_KEY": env.get("PUBLIC_KEY", public_key.strip()),
            "PISTACHIO_WORKSPACE": workspace_path,
            START_ENV: str(START_SH) if mount_start else str(start_sh),
            "PATH": f"{container_bin}:{self.image.bin_dir}:{BASE_PATH}",
            "HOME": str(home),
            MARKER: token,
        }
        config = pod / "sshd_config"
        config.write_text(self._sshd_config(ssh_port, host_key, authorized, session_env))
        sshd_cmd = [sshd, "-D", "-e", "-f", str(config)]
        start_sh.write_text("#!/bin/sh\n# the sandbox pod image's default start: sshd with this pod's config, in the"
                            " foreground\nexec " + shlex.join(sshd_cmd) + "\n")
        start_sh.chmod(0o755)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise PodStartError(f"sshd rejected the config of pod {pod_id}: {check.stderr.strip()}")

        log = open(pod / "sshd.log", "ab")  # noqa: SIM115  (handed to the child)
        main = argv or sshd_cmd
        if namespaced:
            cmd = [*_unshare_args(), "--", "/bin/sh", "-c", NAMESPACE_INIT, "pod", pod_id,
                   str(workspace) if mount else "", str(start_sh) if mount_start else "",
                   self._host_tmp_paths(workspace), str(os.getuid()), str(os.getgid()), *main]
        else:
            cmd = main
        # The main process gets the pod env, like a container's; sshd does not pass its own env on to sessions.
        proc_env = {**session_env, "LANG": "C.UTF-8"} if argv else {"PATH": BASE_PATH, "LANG": "C.UTF-8",
                                                                    MARKER: token}
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    cwd="/" if argv else str(pod), env=proc_env)
        except OSError as exc:  # session isolation: the command itself is exec'd here
            raise PodStartError(f"pod {pod_id}: cannot run its start command {start_cmd!r}: {exc}") from exc
        finally:
            log.close()
        self._procs[pod_id] = proc
        record = {"pod_id": pod_id, "isolation": self.isolation, "port": ssh_port, "token": token,
                  "start_cmd": start_cmd if argv else None,
                  "leader": proc.pid, "leader_start": _stat(proc.pid)[3] if _stat(proc.pid) else 0,
                  "workspace": str(workspace), "workspace_path": workspace_path}
        if namespaced:
            init = self._wait_for_child(proc)
            init_stat = _stat(init) if init else None
            record.update(init=init, init_start=init_stat[3] if init_stat else 0,
                          pid_ns=_pid_ns(init) if init_stat else None)
        (pod / "pod.json").write_text(json.dumps(record, indent=1))
        if wait and not argv and not self.wait_ssh_ready(pod_id, timeout, handshake=True):
            tail = (pod / "sshd.log").read_text(errors="replace")[-2000:]
            self.stop(pod_id)
            raise PodStartError(f"pod {pod_id}: sshd did not answer on 127.0.0.1:{ssh_port} within {timeout}s\n{tail}")

    def _host_tmp_paths(self, workspace: Path) -> str:
        """Folders under the host's /tmp that the pod must still see under its private /tmp: the sandbox's own, and
        every folder there when the pod starts (what a container is given: the stand-in repos and packs that the
        sandbox serves as file:// URLs live there). What the pod writes beside them stays its own."""
        paths = {str(Path(p).resolve()) for p in (self.root, self.image.root, workspace)}
        with contextlib.suppress(OSError):
            paths |= {str(p) for p in Path("/tmp").iterdir()
                      if p.is_dir() and not p.is_symlink() and not set(p.name) & set(":*?[]\\")}
        return ":".join(sorted(p for p in paths if p.startswith("/tmp/"))) or ":"

    @staticmethod
    def _wait_for_child(proc: subprocess.Popen, timeout: float = 5.0) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            if children:
                return children[0]
            time.sleep(0.002)
        return None

    def _sshd_config(self, port: int, host_key: Path, authorized: Path, env: dict[str, str]) -> str:
        lines = [
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {host_key}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {pod_user()}",
            "Subsystem sftp internal-sftp",
            "PermitUserRC no",
            "PermitUserEnvironment no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding yes",
            "MaxStartups 64",
            "MaxSessions 64",
            "LogLevel VERBOSE",
        ]
        pairs = []
        for name, value in env.items():
            if name == "PUBLIC_KEY":  # several keys: one per line in authorized_keys, joined here
                value = " ".join(value.split("\n")).replace("\r", "")
            if any(c in value for c in '"\n\r\\'):
                raise ValueError(f"pod env {name}: quotes, backslashes and newlines are not supported in the sandbox")
            pairs.append(f'"{name}={value}"')
        lines.append("SetEnv " + " ".join(pairs))  # sshd obeys only the first SetEnv line
        return "\n".join(lines) + "\n"

    def ssh_ready(self, pod_id: str, *, handshake: bool = False) -> bool:
        """Whether the pod's sshd is up and listening on its port (cheap: no connection, so it can be polled).
        With `handshake`, also connect and read the SSH banner. A pod with a start command counts as ready once
        its main process runs (RunPod reports such a pod RUNNING whether or not the command starts sshd)."""
        record = self._record(pod_id)
        if record and record.get("start_cmd") and not handshake:
            return self._alive(record) and (not record.get("init") or self._init_alive(record))
        if not record or not self._alive(record) or not _listening(record["port"]):
            return False
        if not handshake:
            return True
        try:
            with socket.create_connection(("127.0.0.1", record["port"]), timeout=0.5) as sock:
                sock.settimeout(0.5)
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def wait_ssh_ready(self, pod_id: str, timeout: float = 10.0, *, handshake: bool = False) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ssh_ready(pod_id, handshake=handshake):
                return True
            record = self._record(pod_id)
            if not record or not self._alive(record):
                return False
            time.sleep(0.01)
        return False

    @staticmethod
    def _init_alive(record: dict) -> bool:
        stat = _stat(record["init"]) if record.get("init") else None
        return stat is not None and stat[3] == record.get("init_start") and _pid_ns(record["init"]) == record["pid_ns"]

    def _alive(self, record: dict) -> bool:
        stat = _stat(record["leader"])
        return stat is not None and stat[3] == record["leader_start"]

    def processes(self, pod_id: str) -> list[int]:
        """Host pids of every live process of the pod (sshd, sessions, detached jobs)."""
        record = self._record(pod_id)
        if not record:
            return []
        pids: set[int] = set()
        if self._alive(record):
            pids.add(record["leader"])
        if record.get("pid_ns") and self._init_alive(record):
            # (once init is gone the kernel has killed the whole namespace, and its id may be reused)
            pids.update(p for p in _all_pids() if _pid_ns(p) == record["pid_ns"] and _stat(p))
        if record["isolation"] == "session":
            marker = f"{MARKER}={record['token']}".encode()
            pids.update(p for p in _all_pids() if p != os.getpid() and _has_marker(p, marker) and _stat(p))
        return sorted(pids)

    def stop(self, pod_id: str, timeout: float = 5.0) -> None:
        """Kills the pod's sshd and every process it started; idempotent. Raises if one survives `timeout`."""
        record = self._record(pod_id)
        proc = self._procs.pop(pod_id, None)
        if record:
            if record.get("pid_ns") and self._init_alive(record):
                _kill([record["init"]])  # the namespace's init: the kernel kills everything in it
            deadline = time.monotonic() + timeout
            while True:
                left = self.processes(pod_id)
                if not left:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pod {pod_id}: processes {left} survived stop")
                _kill(left)
                time.sleep(0.01)
            (self.pod_dir(pod_id) / "pod.json").unlink(missing_ok=True)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        elif record:  # started by another PodHost of this process: reap the leader if it is our child
            with contextlib.suppress(ChildProcessError):
                os.waitpid(record["leader"], os.WNOHANG)

    def stop_all(self) -> None:
        """Stops every pod that has a record under this root (e.g. after a server restart)."""
        pods = self.root / "pods"
        if pods.is_dir():
            for pod in sorted(pods.iterdir()):
                if (pod / "pod.json").exists():
                    self.stop(pod.name)

    def running(self) -> list[str]:
        pods = self.root / "pods"
        if not pods.is_dir():
            return []
        return sorted(p.name for p in pods.iterdir() if (r := self._record(p.name)) and self._alive(r))

    def drop_connections(self, pod_id: str) -> None:
        """Kills the live SSH sessions (their sshd processes and the sessions they run); detached jobs survive."""
        record = self._record(pod_id)
        if not record:
            return
        pids = set(self.processes(pod_id))
        listener = record.get("init") or record["leader"]
        keep = {listener, record["leader"]}
        conn_sshd: set[int] = set()
        todo = [c for c in _children(listener) if _comm(c) == "sshd"]
        while todo:
            pid = todo.pop()
            conn_sshd.add(pid)
            todo += [c for c in _children(pid) if _comm(c) == "sshd" and c not in conn_sshd]
        listener_stat = _stat(listener)
        keep_sids = {listener_stat[2]} if listener_stat else set()
        sids = {s[2] for p in conn_sshd if (s := _stat(p))}
        for pid in conn_sshd:
            sids.update(s[2] for c in _children(pid) if c not in conn_sshd and (s := _stat(c)))
        sids -= keep_sids
        victims = conn_sshd | {p for p in pids if (s := _stat(p)) and s[2] in sids}
        _kill(sorted(victims - keep))
