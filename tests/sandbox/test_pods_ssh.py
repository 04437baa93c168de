"""Sandbox pods driven through PodHost and the real OpenSSH client: env, /workspace, sftp, detached jobs,
isolation between pods, dropped connections and stop leaving no process behind."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pistachio_infra.sandbox.podhost import PodHost, PodStartError, namespaces_work, pod_user

ISOLATIONS = ["namespace", "session"] if namespaces_work() else ["session"]


@pytest.fixture(scope="session")
def pod_key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("pod-key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture(params=ISOLATIONS)
def pod_host(request, tmp_path, pod_image):
    host = PodHost(tmp_path / "sandbox", pod_image, isolation=request.param)
    yield host
    host.stop_all()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ssh_args(port: int, key: Path) -> list[str]:
    return ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"{pod_user()}@127.0.0.1"]


def ssh(port: int, key: Path, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*ssh_args(port, key), command], capture_output=True, text=True, timeout=timeout)


def start_pod(host: PodHost, key: Path, tmp_path: Path, pod_id: str, **env: str) -> tuple[int, Path]:
    port = free_port()
    workspace = tmp_path / "volumes" / pod_id
    host.start(pod_id, ssh_port=port, public_key=key.with_suffix(".pub").read_text(), workspace=workspace,
               env={"RUNPOD_POD_ID": pod_id, "RUNPOD_TCP_PORT_22": str(port), **env})
    return port, workspace


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_ssh_sees_runpod_env_and_workspace(pod_host, pod_key, pod_image, tmp_path):
    env = {"RUNPOD_API_KEY": "pod-scoped-key-1", "RUNPOD_PUBLIC_IP": "127.0.0.1", "RUNPOD_DC_ID": "EU-RO-1",
           "RUNPOD_VOLUME_ID": "vol123", "PISTACHIO_STANDIN_SCENARIO": "/tmp/scenario.json"}
    port, workspace = start_pod(pod_host, pod_key, tmp_path, "podenv1", **env)
    assert pod_host.ssh_ready("podenv1")
    names = [*env, "RUNPOD_POD_ID", "RUNPOD_TCP_PORT_22", "PUBLIC_KEY", "PISTACHIO_WORKSPACE"]
    script = "; ".join(f'echo "{n}=${n}"' for n in names)
    result = ssh(port, pod_key, script + '; echo "python=$(command -v python)"; cd "$PISTACHIO_WORKSPACE" && '
                 "echo from-pod > made-in-pod.txt")
    assert result.returncode == 0, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines())
    for name, value in env.items():
        assert seen[name] == value
    assert seen["RUNPOD_POD_ID"] == "podenv1"
    assert seen["RUNPOD_TCP_PORT_22"] == str(port)
    assert seen["PUBLIC_KEY"] == pod_key.with_suffix(".pub").read_text().strip()
    assert seen["python"] == str(pod_image.bin_dir / "python")
    expected_ws = "/workspace" if pod_host.isolation == "namespace" else str(workspace.resolve())
    assert seen["PISTACHIO_WORKSPACE"] == expected_ws == pod_host.workspace_path("podenv1")
    assert (workspace / "made-in-pod.txt").read_text() == "from-pod\n"


def test_wrong_key_is_refused(pod_host, pod_key, tmp_path):
    port, _ = start_pod(pod_host, pod_key, tmp_path, "podkey1")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    result = ssh(port, other, "true")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_sftp_moves_files_both_ways(pod_host, pod_key, tmp_path):
    port, workspace = start_pod(pod_host, pod_key, tmp_path, "podsftp1")
    ws = pod_host.workspace_path("podsftp1")
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(200_000))
    (workspace / "down.txt").write_text("from the pod\n")
    batch = tmp_path / "batch"
    batch.write_text(f"mkdir {ws}/in\nput {local} {ws}/in/up.bin\nget {ws}/down.txt {tmp_path}/down.txt\n")
    result = subprocess.run(["sftp", "-b", str(batch), "-i", str(pod_key), "-P", str(port), "-o",
                             "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                             f"{pod_user()}@127.0.0.1"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (workspace / "in" / "up.bin").read_bytes() == local.read_bytes()
    assert (tmp_path / "down.txt").read_text() == "from the pod\n"


def test_detached_job_outlives_session_but_not_the_pod(pod_host, pod_key, tmp_path):
    port, workspace = start_pod(pod_host, pod_key, tmp_path, "poddet1")
    result = ssh(port, pod_key, 'cd "$PISTACHIO_WORKSPACE"; setsid nohup sh -c \'echo $$ > job.pid; '
                 "exec sleep 300' > job.log 2>&1 < /dev/null & echo launched")
    assert result.stdout.strip() == "launched"
    deadline = time.monotonic() + 5
    while not (workspace / "job.pid").exists() or not (workspace / "job.pid").read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    job_in_pod = int((workspace / "job.pid").read_text())
    # the session is over; the job is still one of the pod's processes (sleep: pid as seen on the host)
    def sleeping_jobs() -> list[int]:
        return [p for p in pod_host.processes("poddet1") if comm(p) == "sleep"]

    while not sleeping_jobs() and time.monotonic() < deadline:  # `sh` has yet to exec sleep
        time.sleep(0.02)
    jobs = sleeping_jobs()
    host_pids = pod_host.processes("poddet1")
    assert len(jobs) == 1 and alive(jobs[0])
    if pod_host.isolation == "session":
        assert jobs[0] == job_in_pod
    check = ssh(port, pod_key, f"kill -0 {job_in_pod} && echo running")
    assert check.stdout.strip() == "running", check

    pod_host.stop("poddet1")
    assert pod_host.processes("poddet1") == []
    assert not any(alive(p) for p in host_pids)
    assert not pod_host.ssh_ready("poddet1")
    pod_host.stop("poddet1")  # idempotent


def test_pods_do_not_see_each_other(pod_host, pod_key, tmp_path):
    port_a, ws_a = start_pod(pod_host, pod_key, tmp_path, "podiso-a")
    port_b, ws_b = start_pod(pod_host, pod_key, tmp_path, "podiso-b")
    write = ssh(port_a, pod_key, 'echo secret-a > "$PISTACHIO_WORKSPACE/a.txt"')
    assert write.returncode == 0, write
    listing = ssh(port_b, pod_key, 'ls -A "$PISTACHIO_WORKSPACE"')
    assert listing.returncode == 0 and "a.txt" not in listing.stdout, listing
    assert (ws_a / "a.txt").exists() and not (ws_b / "a.txt").exists()
    ssh(port_a, pod_key, "setsid nohup sleep 300 > /dev/null 2>&1 < /dev/null &")
    pids_a, pids_b = set(pod_host.processes("podiso-a")), set(pod_host.processes("podiso-b"))
    assert pids_a and pids_b and not pids_a & pids_b, (pids_a, pids_b)
    if pod_host.isolation == "namespace":
        ps = ssh(port_b, pod_key, "ps -eo comm=")
        assert ps.returncode == 0 and "sleep" not in ps.stdout.split(), ps  # b's process table holds only b's
    pod_host.stop("podiso-a")
    assert pod_host.ssh_ready("podiso-b"), pod_host.processes("podiso-b")  # stopping a leaves b running
    assert ssh(port_b, pod_key, "echo ok").stdout.strip() == "ok"


def test_drop_connections_ends_live_sessions_only(pod_host, pod_key, tmp_path):
    port, _ = start_pod(pod_host, pod_key, tmp_path, "poddrop1")
    ssh(port, pod_key, "setsid nohup sleep 301 > /dev/null 2>&1 < /dev/null &")
    live = subprocess.Popen([*ssh_args(port, pod_key), "echo connected; exec sleep 302"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "connected"

        def sleepers() -> dict[str, int]:
            found = {}
            for pid in pod_host.processes("poddrop1"):
                with contextlib.suppress(OSError, IndexError):
                    found[Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1].decode()] = pid
            return found

        deadline = time.monotonic() + 5
        while not {"301", "302"} <= sleepers().keys() and time.monotonic() < deadline:
            time.sleep(0.02)  # the session has yet to exec sleep
        before = sleepers()
        assert {"301", "302"} <= before.keys()
        pod_host.drop_connections("poddrop1")
        assert live.wait(timeout=10) == 255  # the client sees the connection die
        deadline = time.monotonic() + 5
        while alive(before["302"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(before["302"])
        assert alive(before["301"])  # the detached job survives
        assert ssh(port, pod_key, "echo back").stdout.strip() == "back"  # new sessions work
    finally:
        live.kill()
        live.wait()


def test_restart_gives_fresh_home_and_keeps_workspace(pod_host, pod_key, tmp_path):
    port, _ = start_pod(pod_host, pod_key, tmp_path, "podrst1")
    assert ssh(port, pod_key, 'touch "$HOME/scratch" "$PISTACHIO_WORKSPACE/kept"').returncode == 0
    pod_host.stop("podrst1")
    port2, _ = start_pod(pod_host, pod_key, tmp_path, "podrst1")
    result = ssh(port2, pod_key, 'ls "$HOME"; ls "$PISTACHIO_WORKSPACE"; git config --global protocol.file.allow')
    assert "scratch" not in result.stdout and "kept" in result.stdout
    assert result.stdout.strip().endswith("always")


def test_port_in_use_fails_start(pod_image, pod_key, tmp_path):
    host = PodHost(tmp_path / "sandbox", pod_image)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        # the sandbox's pod boot retries on another port when it sees sshd's own words (sandbox/cloud.py _boot)
        with pytest.raises(PodStartError, match=r"Address already in use"):
            host.start("podbusy", ssh_port=busy.getsockname()[1], public_key=pod_key.with_suffix(".pub").read_text(),
                       env={}, workspace=tmp_path / "ws", timeout=120)  # returns when sshd exits
    assert host.processes("podbusy") == []


# --- the container start command (issue 18) -------------------------------------------------------------------
# runpod/containers @ 6990d3773d180d0270d534a6e532c997dc629060: official-templates/base/Dockerfile ends with
# `CMD ["/start.sh"]`; container-template/start.sh starts sshd from PUBLIC_KEY. A start command replaces that CMD.


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_start_command_runs_with_the_pod_env_and_chains_the_default_start(pod_host, pod_key, tmp_path):
    port = free_port()
    workspace = tmp_path / "volumes" / "podcmd"
    cmd = ("bash -c 'echo \"$MARK $RUNPOD_POD_ID $(pwd)\" > \"$PISTACHIO_WORKSPACE/first.txt\"; "
           "sleep 300 & exec \"$PISTACHIO_START_SH\"'")
    pod_host.start("podcmd", ssh_port=port, public_key=pod_key.with_suffix(".pub").read_text(), workspace=workspace,
                   env={"RUNPOD_POD_ID": "podcmd", "MARK": "hello"}, start_cmd=cmd)
    assert wait_for(lambda: pod_host.ssh_ready("podcmd", handshake=True))
    result = ssh(port, pod_key, 'cat "$PISTACHIO_WORKSPACE/first.txt"; echo "$PISTACHIO_START_SH"')
    assert result.returncode == 0, result.stderr
    first, start_sh = result.stdout.splitlines()
    assert first == "hello podcmd /"
    assert Path(start_sh).name == "start.sh"
    sleepers = [p for p in pod_host.processes("podcmd") if comm(p) == "sleep"]
    assert sleepers  # the guard started by the command belongs to the pod...
    pod_host.stop("podcmd")
    assert not any(alive(p) for p in sleepers)  # ...and dies with it


def test_start_command_without_the_default_start_has_no_sshd(pod_host, pod_key, tmp_path):
    port = free_port()
    pod_host.start("podnossh", ssh_port=port, public_key=pod_key.with_suffix(".pub").read_text(),
                   workspace=tmp_path / "ws", env={}, start_cmd="sleep 300")
    assert pod_host.ssh_ready("podnossh")  # the container runs: RunPod says RUNNING
    assert not pod_host.ssh_ready("podnossh", handshake=True)
    assert ssh(port, pod_key, "true", timeout=20).returncode != 0
    wait_for(lambda: any(comm(p) == "sleep"
                         for p in pod_host.processes("podnossh")))  # the command is the pod's process


@pytest.mark.skipif(not namespaces_work(), reason="needs Linux namespaces (UTS)")
def test_each_namespaced_pod_has_its_own_hostname(pod_image, pod_key, tmp_path):
    host = PodHost(tmp_path / "sandbox", pod_image, isolation="namespace")
    try:
        ports = {pod_id: start_pod(host, pod_key, tmp_path, pod_id)[0] for pod_id in ("podhosta", "podhostb")}
        names = {pod_id: ssh(port, pod_key, "cat /proc/sys/kernel/hostname").stdout.strip()
                 for pod_id, port in ports.items()}
        assert names == {"podhosta": "podhosta", "podhostb": "podhostb"}
        assert socket.gethostname() not in names.values()
    finally:
        host.stop_all()
