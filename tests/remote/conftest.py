"""Pods for the remote-execution tests: a real OpenSSH sshd on a loopback port with its own host key and workspace.

This is a stand-in until the sandbox's PodHost (pistachio_infra.sandbox.podhost) is the one place that starts sshd;
it implements the few PodHost operations these tests need (start, stop, drop_connections) plus two faults the tests
inject: a different host key on the same pod, and a file corrupted on the pod between hashing and download.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pistachio_infra.remote import Remote, generate_keypair
from pistachio_infra.state import Store

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = next(
    (p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server")
     if os.path.exists(p)),
    None,
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry))
    return found


class SshdPod:
    def __init__(self, root: Path, pod_id: str, public_key: str) -> None:
        self.root = root
        self.pod_id = pod_id
        self.port = free_port()
        self.workspace = root / "workspace"
        self.workspace.mkdir(parents=True)
        (root / "authorized_keys").write_text(public_key + "\n")
        self.host_key = root / "host_ed25519"
        self.new_host_key()
        self.corrupt_marker = root / "corrupt-on-sftp-open"
        self.proc: subprocess.Popen[bytes] | None = None

    def new_host_key(self) -> str:
        self.host_key.unlink(missing_ok=True)
        return generate_keypair(self.host_key, comment=self.pod_id)

    def _config(self) -> Path:
        sftp = self.root / "sftp-subsystem"
        # fault injection: when the marker names a file, flip its first byte as the SFTP session opens
        sftp.write_text(
            "#!/bin/sh\n"
            f'm={self.corrupt_marker}; if [ -s "$m" ]; then f=$(cat "$m"); rm -f "$m";'
            ' printf X | dd of="$f" bs=1 count=1 conv=notrunc 2>/dev/null; fi\n'
            f"exec {SFTP_SERVER}\n"
        )
        sftp.chmod(0o755)
        cfg = self.root / "sshd_config"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile {self.root / 'sshd.pid'}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nPrintMotd no\nMaxStartups 50\nLogLevel ERROR\n"
            f"SetEnv PISTACHIO_WORKSPACE={self.workspace} HOME={self.root}\nSubsystem sftp {sftp}\n"
        )
        return cfg

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation directory when running as root
        log = (self.root / "sshd.log").open("ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self._config())], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"sshd did not listen on {self.port}: {(self.root / 'sshd.log').read_text()}")

    def start_later(self, delay: float) -> threading.Timer:
        timer = threading.Timer(delay, self.start)
        timer.start()
        return timer

    def drop_connections(self) -> None:
        """Kill every live SSH session (all sshd processes below the listener); detached jobs are not below it."""
        assert self.proc is not None
        todo, victims = [self.proc.pid], []
        while todo:
            kids = _children(todo.pop())
            victims += kids
            todo += kids
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            self.drop_connections()
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def kill_workspace_processes(self) -> None:
        """Stop detached jobs left by a test (processes whose cwd or command line points into the workspace)."""
        mark = str(self.workspace)
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if mark in cmd or cwd.startswith(mark):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), signal.SIGKILL)


@pytest.fixture
def ssh_key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "client" / "id_ed25519"
    return path, generate_keypair(path)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))
    s = Store(tmp_path / "home" / "state.sqlite3")
    yield s
    s.close()


@pytest.fixture
def make_pod(tmp_path: Path, ssh_key: tuple[Path, str]) -> Iterator:
    pods: list[SshdPod] = []

    def make(pod_id: str = "pod-a", *, start: bool = True) -> SshdPod:
        pod = SshdPod(tmp_path / pod_id, pod_id, ssh_key[1])
        pods.append(pod)
        if start:
            pod.start()
        return pod

    yield make
    for pod in pods:
        pod.stop()
        pod.kill_workspace_processes()


@pytest.fixture
def pod(make_pod) -> SshdPod:
    return make_pod()


@pytest.fixture
def remote(pod: SshdPod, ssh_key: tuple[Path, str], store: Store) -> Iterator[Remote]:
    r = Remote.connect(
        pod_id=pod.pod_id, host="127.0.0.1", port=pod.port, key_path=ssh_key[0], store=store, user=getpass.getuser(),
        timeout=20,
    )  # fmt: skip
    yield r
    r.close()
