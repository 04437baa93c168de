"""Detached jobs on a real sshd: they survive dropped SSH sessions, `follow` re-attaches without losing or repeating
output, exit codes are recorded, a second start does not start twice, and env secrets stay in the process env."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from pistachio_infra.remote import RemoteJobError, SshNotReadyError

from .conftest import connect

COUNT_SCRIPT = 'for i in $(seq 1 {n}); do echo "line $i ünïcode"; sleep {pause}; done; echo done; exit {code}'


def expected_lines(n: int) -> str:
    return "".join(f"line {i} ünïcode\n" for i in range(1, n + 1)) + "done\n"


def test_job_survives_dropped_ssh_and_follow_gets_every_line_once(remote, pod):
    remote.start_detached("train", COUNT_SCRIPT.format(n=30, pause=0.05, code=7))
    chunks: list[str] = []
    connections = [remote.connection]

    def on_output(text: str) -> None:
        chunks.append(text)
        if len(chunks) == 1:
            pod.drop_connections()  # kill every sshd session process while the job is half way

    code = remote.follow("train", on_output=on_output, poll=0.1, reconnect_timeout=20)
    connections.append(remote.connection)
    assert code == 7
    assert "".join(chunks) == expected_lines(30)
    assert connections[0] is not connections[1], "follow should have reconnected after the drop"
    status = remote.job("train")
    assert status is not None and status.exit_code == 7 and not status.running and not status.lost


def test_a_new_client_can_reattach_from_an_offset(remote, pod, ssh_key, store):
    remote.start_detached("caption", COUNT_SCRIPT.format(n=10, pause=0.02, code=0))
    first, offset = remote.read_log("caption", 0)
    pod.drop_connections()
    remote.close()
    with connect(pod, ssh_key, store) as again:
        rest: list[str] = []
        assert again.follow("caption", offset=offset, on_output=rest.append, poll=0.05) == 0
    assert first.decode() + "".join(rest) == expected_lines(10)


def test_exit_code_is_recorded_and_read_log_pages(remote):
    job = remote.start_detached("quick", "echo hello; echo oops >&2; exit 3")
    assert job.pid is not None and job.log_path.endswith("/.pistachio/jobs/quick/log")
    deadline = time.monotonic() + 10
    while (status := remote.job("quick")).running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status.exit_code == 3 and not status.running
    data, offset = remote.read_log("quick", 0)
    assert data == b"hello\noops\n" and offset == len(data)
    assert remote.read_log("quick", offset) == (b"", offset)
    assert remote.read_log("quick", 6) == (b"oops\n", 11)
    assert remote.job("never-started") is None


def test_starting_a_running_job_again_returns_it(remote, pod, ssh_key, store):
    command = "echo ran; sleep 1.5"
    first = remote.start_detached("once", command)
    # a second client racing the first one: flock on the pod makes them agree
    other = connect(pod, ssh_key, store)
    results = []
    threads = [threading.Thread(target=lambda r=r: results.append(r.start_detached("once", command)))
               for r in (remote, other)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert {j.pid for j in results} == {first.pid} and all(j.running for j in results)
    assert remote.follow("once", on_output=lambda _: None, poll=0.1) == 0
    assert pod.local(first.log_path).read_text() == "ran\n"
    # finished: starting it again is a new run
    again = remote.start_detached("once", "echo second")
    assert again.pid != first.pid
    assert remote.follow("once", on_output=lambda _: None, poll=0.05) == 0
    assert remote.read_log("once")[0] == b"second\n"


def test_env_secret_reaches_the_process_only(remote, pod):
    secret = "wandb-0123456789-secret"
    remote.start_detached("wandb", 'echo "key length ${#WANDB_API_KEY}"; exec sleep 30',
                          env={"WANDB_API_KEY": secret}, cwd=pod.workspace)  # fmt: skip
    deadline = time.monotonic() + 5
    while b"key length" not in remote.read_log("wandb")[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert remote.read_log("wandb")[0] == f"key length {len(secret)}\n".encode()
    needle = secret.encode()
    # in the job's environment (seen from this machine, which sees the pod's processes)...
    environs = [_read(f"/proc/{pid}/environ") for pid in pod.host.processes(pod.pod_id)]
    assert any(needle in env for env in environs)
    # ...and in no process's command line, and in no file of the pod (workspace, home, sshd files)
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and needle in _read(f"/proc/{pid}/cmdline")]
    for root in (pod.workspace_dir, pod.host.pod_dir(pod.pod_id)):
        for path in root.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), path
    remote.kill_job("wandb")
    assert remote.follow("wandb", on_output=lambda _: None, poll=0.05) == 143  # TERM, recorded by the wrapper


def test_a_job_killed_without_trace_is_reported_lost(remote):
    remote.start_detached("doomed", "sleep 30")
    remote.kill_job("doomed", "KILL")  # the wrapper dies too: no exit code can be written
    with pytest.raises(RemoteJobError, match="without recording an exit code"):
        remote.follow("doomed", on_output=lambda _: None, poll=0.05)
    assert remote.job("doomed").lost


def test_follow_gives_up_when_the_pod_stays_unreachable(remote, pod):
    remote.start_detached("orphan", "sleep 30")
    pod.stop()  # the pod (and the job) are gone for good
    started = time.monotonic()
    with pytest.raises(SshNotReadyError, match=r"did not become ready within 1\.5s"):
        remote.follow("orphan", on_output=lambda _: None, poll=0.05, reconnect_timeout=1.5)
    assert time.monotonic() - started < 30  # gave up after its 1.5 s (with slack for a loaded machine)


def test_follow_unknown_job_is_an_error(remote):
    with pytest.raises(RemoteJobError, match="no job named ghost"):
        remote.follow("ghost", on_output=print)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def test_a_start_after_the_connection_dropped_reconnects_and_launches_once(remote, pod):
    """A drop just before the start (the first try cannot even open a session) is retried, not a failed stage."""
    pod.drop_connections()
    job = remote.start_detached("after-drop", "echo ran >> runs.txt", cwd=remote.workspace)
    assert job.pid is not None
    assert remote.follow("after-drop", on_output=lambda _: None, poll=0.05) == 0
    assert (pod.local(remote.workspace) / "runs.txt").read_text() == "ran\n"


def test_a_start_retried_with_the_same_launch_id_reports_that_launch(remote, pod):
    """The retry of a start whose first try launched a job that has already ended must not launch it again."""
    from pistachio_infra.remote import jobs

    command, cwd = "echo ran >> retried.txt", remote.workspace
    first = jobs.start_detached(remote, "retried", command, cwd=cwd, launch_id="launch-1")
    assert remote.follow("retried", on_output=lambda _: None, poll=0.05) == 0
    again = jobs.start_detached(remote, "retried", command, cwd=cwd, launch_id="launch-1")
    assert again.pid == first.pid and again.exit_code == 0
    jobs.start_detached(remote, "retried", command, cwd=cwd, launch_id="launch-2")
    assert remote.follow("retried", on_output=lambda _: None, poll=0.05) == 0
    assert (pod.local(remote.workspace) / "retried.txt").read_text() == "ran\nran\n"
