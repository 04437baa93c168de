"""`up`, `ssh`, `status`, `logs`, `down`, `reap` and `gpus --live` through the real CLI against the sandbox, and
SIGTERM / Ctrl-C during a command still tearing its pod down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from pistachio_infra.endpoints import resolve_cloud
from pistachio_infra.pods.sshkeys import public_key
from pistachio_infra.runpod import connect
from pistachio_infra.runpod.port import PodRequest
from pistachio_infra.state import Store

from .conftest import live_pods, wait_until

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "pistachio-infra")


def cli(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # rich tables: no wrapping
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=input, timeout=timeout, env=env)


def test_up_then_ssh_status_logs_and_down(sandbox, sandbox_admin):
    up = cli("up", "--gpu", "a6000", "--gpu-fallback", "a40", "--no-models", "--max-hours", "2", "--label", "cli")
    assert up.returncode == 0, up.stdout + up.stderr
    name = re.search(r"ready\s+(pistachio-up-cli-[0-9a-f]{6}) \((\w+)\)", up.stdout).group(1)
    assert "watchdog  terminates it at" in up.stdout and "$0.49/h" in up.stdout
    assert "clone:diffusion-pipe" in up.stdout
    assert len(live_pods(sandbox_admin)) == 1  # `up` keeps its pod

    ssh = cli("ssh", name, "echo", "hello-from-$RUNPOD_POD_ID")
    assert ssh.returncode == 0, ssh.stderr
    (pod,) = live_pods(sandbox_admin)
    assert ssh.stdout.strip() == f"hello-from-{pod['id']}"

    status = cli("status")
    assert status.returncode == 0 and name in status.stdout and "RUNNING" in status.stdout

    logs = cli("logs", name, "--job", "bootstrap")
    assert "PISTACHIO-BOOTSTRAP-DONE" in logs.stdout
    assert "started pid" in cli("logs", name, "--watchdog").stdout

    down = cli("down", name)
    assert down.returncode == 0 and f"terminated {name}" in down.stdout
    assert live_pods(sandbox_admin) == []
    with closing(Store()) as store:
        assert store.pod(name).status == "gone"


def test_up_prints_its_ssh_command_whole_so_it_can_be_pasted(sandbox, sandbox_admin):
    """Issue 19.8: piped output (and a narrow terminal) wrapped the ~230-character ssh command over two lines."""
    import shlex

    up = cli("up", "--gpu", "a6000", "--no-models", "--max-hours", "1", "--label", "paste")
    assert up.returncode == 0, up.stdout + up.stderr
    lines = up.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  ssh       pistachio-infra ssh "))
    command = lines[at + 1].strip()
    assert len(command) > 120 and lines[at + 2].startswith("  watchdog")  # one line, nothing spilled over
    pasted = subprocess.run([*shlex.split(command), "echo", "pasted-ok"], capture_output=True, text=True, timeout=60)
    assert pasted.returncode == 0 and pasted.stdout.strip() == "pasted-ok", pasted.stderr
    name = lines[at].split()[-1]
    assert cli("down", name).returncode == 0
    assert live_pods(sandbox_admin) == []


def test_a_pods_tmp_is_its_own_and_goes_with_it(sandbox, sandbox_admin):
    """Issue 19.9: sandbox pods wrote into the host's /tmp (a /tmp/pistachio-bootstrap-<pod> per pod, never removed)."""
    up = cli("up", "--gpu", "a6000", "--no-models", "--max-hours", "1", "--label", "tmp")
    assert up.returncode == 0, up.stdout + up.stderr
    name, pod_id = re.search(r"ready\s+(pistachio-up-tmp-[0-9a-f]{6}) \((\w+)\)", up.stdout).groups()
    marker = f"pistachio-tmp-check-{pod_id}"
    wrote = cli("ssh", name, "touch", f"/tmp/{marker}", "&&", "ls", "/tmp")
    assert wrote.returncode == 0 and marker in wrote.stdout, wrote.stderr
    assert not (Path("/tmp") / marker).exists()  # the host's /tmp never saw it
    assert not list(Path("/tmp").glob(f"*{pod_id}*"))  # nor the bootstrap's files
    assert cli("down", name).returncode == 0
    assert live_pods(sandbox_admin) == []


def test_bad_input_is_refused_before_any_pod_exists(sandbox, sandbox_admin):
    bad = cli("up", "--gpu", "a9000")
    assert bad.returncode != 0 and "unknown GPU class 'a9000'" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("up", "--gpu", "a6000", "--max-hours", "0").returncode != 0
    assert "--volume" in cli("up", "--gpu", "a6000", "--volume").stderr  # no env stack: no volume to mount
    assert sandbox_admin.pods() == []


def test_reap_lists_and_terminates_only_orphans(sandbox, sandbox_admin):
    api = connect(resolve_cloud())
    orphan = api.create_pod(
        PodRequest(name="pistachio-job-orphan-abc123", image="img", gpu_type_id="NVIDIA RTX A6000",
                   env={"PUBLIC_KEY": public_key()})
    )  # fmt: skip
    stranger = api.create_pod(PodRequest(name="someone-elses-pod", image="img", gpu_type_id="NVIDIA A40"))
    listed = cli("reap", input="n\n")
    assert "pistachio-job-orphan-abc123" in listed.stdout and "not in this machine's state" in listed.stdout
    assert "someone-elses-pod" not in listed.stdout
    assert len(live_pods(sandbox_admin)) == 2  # answered "n"

    reaped = cli("reap", "--yes")
    assert reaped.returncode == 0 and "terminated pistachio-job-orphan-abc123" in reaped.stdout
    assert [p["id"] for p in live_pods(sandbox_admin)] == [stranger.id]
    assert orphan.id not in {p["id"] for p in live_pods(sandbox_admin)}
    assert "nothing to reap" in cli("reap").stdout
    api.terminate_pod(stranger.id)


def test_gpus_live_shows_the_sandbox_prices_and_stock(sandbox):
    out = cli("gpus", "--live")
    assert out.returncode == 0, out.stderr
    (live,) = [g for g in connect(resolve_cloud()).list_gpu_types() if g.id == "NVIDIA RTX A6000"]
    stocked = sum(1 for dc in live.data_centers if dc.stock != "NONE")
    a6000 = next(line for line in out.stdout.splitlines() if "NVIDIA RTX A6000" in line)
    assert f"${live.secure_price:.2f}/h" in a6000 and "(hint)" not in a6000
    assert f"{live.stock.value} in {stocked}/{len(live.data_centers)} DCs" in a6000


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]], ids=["sigterm", "ctrl-c-twice"])
def test_signal_during_up_still_terminates_the_pod(sandbox, sandbox_admin, signals):
    sandbox_admin.inject("slow_provisioning", count=1, delay=3.0)  # keeps `up` busy with a pod that exists
    proc = subprocess.Popen([CLI, "up", "--gpu", "a6000", "--no-models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ)  # fmt: skip
    wait_until(lambda: sandbox_admin.pods(), 180, "up to create its pod")
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert live_pods(sandbox_admin) == [], out + err
    with closing(Store()) as store:
        (record,) = store.pods()
        assert record.status == "gone" and "teardown" in record.gone_reason
