"""The pod-side watchdog terminates its own pod with the pod-scoped key — max runtime, client gone while no job
runs, job finished but never harvested — and the client being SIGKILLed after `up` is one of those cases."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from pistachio_infra.endpoints import resolve_cloud
from pistachio_infra.pods import PodSpec
from pistachio_infra.pods.session import pod_session
from pistachio_infra.pods.sshkeys import public_key
from pistachio_infra.pods.watchdog import WatchdogPolicy, mark_harvested, mark_job_finished
from pistachio_infra.runpod import connect
from pistachio_infra.state import Store

from .conftest import live_pods, wait_until

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "pistachio-infra")


@pytest.fixture
def volume(sandbox):
    """A network volume, so the pod's workspace (and the watchdog's log) outlives the pod."""
    api = connect(resolve_cloud())
    vol = api.create_volume("pst-watchdog", 10, "US-TX-3")
    yield vol
    api.close()


def spec(volume) -> PodSpec:
    return PodSpec(
        purpose="job", label="watchdog", gpu_classes=("a6000",), public_key=public_key(),
        network_volume_id=volume.id, network_volume_dc=volume.data_center_id,
    )  # fmt: skip


def watchdog_log(sandbox, volume) -> str:
    return (Path(sandbox.home) / "volumes" / volume.id / ".pistachio" / "watchdog.log").read_text()


def gone(admin, pod_id: str) -> bool:
    return all(p["status"] == "TERMINATED" for p in admin.pods() if p["id"] == pod_id)


def test_max_runtime_terminates_the_pod_even_with_the_client_attached(sandbox, sandbox_admin, volume):
    # max runtime counts from the pod's creation: long enough that a loaded machine finishes the session's set-up
    policy = WatchdogPolicy(max_runtime_s=30, idle_s=120, heartbeat_s=0.5, poll_s=0.5)
    with closing(Store()) as store, pod_session(spec(volume), policy=policy, models=None, store=store) as s:
        wait_until(lambda: gone(sandbox_admin, s.pod.id), 180, "the watchdog to terminate the pod")
        assert s.deadline_epoch <= time.time() + 1
    assert "terminating: max runtime reached" in watchdog_log(sandbox, volume)
    assert live_pods(sandbox_admin) == []


def test_client_gone_terminates_only_after_the_running_job_ends(sandbox, sandbox_admin, volume):
    policy = WatchdogPolicy(max_runtime_s=600, idle_s=2, heartbeat_s=0.5, poll_s=0.5)
    with closing(Store()) as store, pod_session(spec(volume), policy=policy, models=None, store=store) as s:
        started = time.monotonic()  # before the job starts: the pod may only go once the job's 6 s are over
        s.remote.start_detached("train", "sleep 6")
        s.heartbeat.stop()  # the client stops attending (as if its laptop closed)
        time.sleep(4)
        assert not gone(sandbox_admin, s.pod.id), "terminated while a job was running"
        wait_until(lambda: gone(sandbox_admin, s.pod.id), 30, "the idle rule to terminate the pod")
        assert time.monotonic() - started >= 6
    assert "no client heartbeat" in watchdog_log(sandbox, volume)
    assert live_pods(sandbox_admin) == []


def test_finished_job_not_harvested_in_time_is_terminated(sandbox, sandbox_admin, volume):
    policy = WatchdogPolicy(max_runtime_s=600, idle_s=60, heartbeat_s=0.5, poll_s=0.5, harvest_grace_s=2)
    with closing(Store()) as store, pod_session(spec(volume), policy=policy, models=None, store=store) as s:
        mark_job_finished(s.remote)
        mark_harvested(s.remote)
        time.sleep(3.5)
        assert not gone(sandbox_admin, s.pod.id), "terminated although the job was harvested"
        s.remote.run("rm -f \"$PISTACHIO_WORKSPACE/.pistachio/harvested\"")
        wait_until(lambda: gone(sandbox_admin, s.pod.id), 30, "the harvest rule to terminate the pod")
    assert "nothing was harvested" in watchdog_log(sandbox, volume)


def test_sigkilled_client_after_up_leaves_the_watchdog_to_terminate_the_pod(sandbox, sandbox_admin):
    env = {**os.environ, "PISTACHIO_WATCHDOG_POLL_S": "0.5", "PISTACHIO_WATCHDOG_HEARTBEAT_S": "0.5"}
    proc = subprocess.Popen(
        [CLI, "up", "--gpu", "a6000", "--no-models", "--max-hours", "1", "--idle-minutes", "0.05", "--label", "kill"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:  # up prints the watchdog deadline once the watchdog runs, then bootstraps
        lines.append(line)
        if "watchdog terminates it by" in line:
            break
    else:
        pytest.fail("up never installed the watchdog:\n" + "".join(lines))
    proc.send_signal(signal.SIGKILL)  # no teardown can run in the client now
    proc.wait(timeout=10)
    killed_at = time.time()
    (pod,) = live_pods(sandbox_admin)
    wait_until(lambda: gone(sandbox_admin, pod["id"]), 60, "the watchdog to terminate the orphaned pod", interval=0.5)
    terminated = next(p for p in sandbox_admin.pods() if p["id"] == pod["id"])
    assert terminated["terminated_at"] >= killed_at  # it was running when the client died
    with closing(Store()) as store:
        assert store.pod(pod["id"]).status != "gone"  # nobody on our side terminated it
    assert live_pods(sandbox_admin) == []
    status = subprocess.run([CLI, "status"], capture_output=True, text=True, env={**env, "COLUMNS": "200"})
    assert status.returncode == 0 and "gone" in status.stdout
    with closing(Store()) as store:
        assert "watchdog" in store.pod(pod["id"]).gone_reason  # status noticed and recorded it
