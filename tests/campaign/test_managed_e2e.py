"""Issue 21 items 1-3: managed campaigns. `campaign run FILE --detach` rents a CPU pod (the controller: REST v2
`POST /v2/pods` with `cpu: {id, vcpuCount}`, RunPod's OpenAPI document, copied in pistachio_infra/sandbox/
openapi-v2.json), ships this version of the tool there as a wheel whose dependencies pip installs from the sandbox's
package index (PEP 503, as pypi.org/simple serves them: sandbox/pypi.py), and returns; the controller runs the
executor, every job publishes, the controller and every job pod end, `campaign status` shows the totals (from the
published ledger once the controller is gone) and `campaign pull` installs the LoRAs. A controller SIGKILLed
mid-campaign loses no job: a second `--detach` adopts the running job pod and trains nothing twice.

Real subprocesses against the sandbox (real sshd pods, the hub stand-in); synchronised on state changes with
generous bounds, never on sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import cli, live_pods, wait_until, write_campaign

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.toml"
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"


def _token() -> str:
    return "hf_" + "c" * 24  # built at run time: no token-shaped literal in the repo


@pytest.fixture(autouse=True)
def hf_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", _token())


def _published(sandbox, job: str) -> dict | None:  # type: ignore[no-untyped-def]
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(f"sandbox-user/{job}-lora", "pistachio_result.json", token=_token(),
                               endpoint=sandbox.hf_endpoint, force_download=True)
    except Exception:
        return None
    return json.loads(Path(path).read_text())


def _controllers(admin) -> list[dict]:  # type: ignore[no-untyped-def]
    return [p for p in admin.pods() if p["name"].startswith("pistachio-controller-")]


def _job_pods(admin) -> list[dict]:  # type: ignore[no-untyped-def]
    return [p for p in admin.pods() if p["name"].startswith("pistachio-job-")]


def _example(tmp_path: Path) -> Path:
    """examples/campaign.toml with a durable destination (a managed campaign publishes every LoRA)."""
    text = EXAMPLE.read_text()
    assert 'comfyui_loras_dir = "ComfyUI/models/loras"\n' in text
    camp = tmp_path / "campaign.toml"
    camp.write_text(text.replace('comfyui_loras_dir = "ComfyUI/models/loras"\n',
                                 'comfyui_loras_dir = "ComfyUI/models/loras"\nhf_namespace = "sandbox-user"\n'))
    return camp


def test_detached_example_campaign_publishes_every_job_and_ends_every_pod_within_budget(sandbox, sandbox_admin,
                                                                                      tmp_path):
    import jsonschema

    camp = _example(tmp_path)
    jobs = ["pip", "mira", "bolt", "juno"]
    started = cli("campaign", "run", str(camp), "--detach")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "runs on its controller pod" in started.stdout and "this machine can go" in started.stdout
    (controller,) = _controllers(sandbox_admin)
    # the client is gone; the campaign goes on without it (the controller still has the install and 4 jobs ahead)
    assert sum(_published(sandbox, j) is not None for j in jobs) < len(jobs)
    pod = next(p for p in sandbox_admin.pods() if p["id"] == controller["id"])
    assert pod["status"] != "TERMINATED"
    assert _token() not in json.dumps(pod)  # the keys reached the controller's process, not the pod's record

    wait_until(lambda: any(_published(sandbox, j) for j in jobs), 900, "a first job published")
    workspace = Path(controller["workspace"])  # still live: 3 jobs to go
    assert (workspace / ".pistachio" / "controller" / "status.json").is_file()
    secrets = (_token().encode(), sandbox.api_key.encode())  # the HF token and the account's RunPod key
    leaks = [f for f in workspace.rglob("*") if f.is_file() and any(k in f.read_bytes() for k in secrets)]
    assert leaks == []  # no key in the controller's plan, status, logs or state

    wait_until(lambda: not live_pods(sandbox_admin) and all(_published(sandbox, j) for j in jobs), 1500,
               "every job published, the controller and every job pod terminated")
    for job in jobs:
        assert _published(sandbox, job)["campaign"] == "mascots"
    billed = sandbox_admin.billing()
    total = sum(billed.values())
    assert billed[controller["id"]] > 0 and total <= 12.0  # the controller's own cost within the budget
    share = billed[controller["id"]] / total
    print(f"controller share of the campaign's cost: ${billed[controller['id']]:.4f} of ${total:.4f} "
          f"({share:.0%})")

    status = cli("campaign", "status", str(camp), "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    jsonschema.validate(doc, json.loads((SCHEMAS / "campaign-status.json").read_text()))
    (c,) = doc["campaigns"]
    assert c["status"] == "done" and c["managed"]["source"].startswith("published")
    assert sorted(j["job"] for j in c["jobs"] if j["status"] == "done") == sorted(jobs)
    assert 0 < c["managed"]["controller_usd"] <= c["managed"]["reserve_usd"]
    assert total / 2 <= c["spent_usd"] <= 12.0
    table = cli("campaign", "status", str(camp))
    assert "controller" in table.stdout and "done" in table.stdout

    pulled = cli("campaign", "pull", str(camp))
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    loras = Path(os.environ["PISTACHIO_HOME"]) / "campaigns" / "mascots" / "ComfyUI" / "models" / "loras"
    assert len(list(loras.glob("*.safetensors"))) == 4
    assert "4 of 4 LoRA(s) installed" in pulled.stdout
    assert not live_pods(sandbox_admin)  # pull rents nothing


def _supervisor_state(pod: dict) -> dict:
    try:
        return json.loads((Path(pod["workspace"]) / ".pistachio" / "supervisor" / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _training(admin) -> list[dict]:  # type: ignore[no-untyped-def]
    """Live job pods whose supervisor has started training."""
    return [p for p in _job_pods(admin) if p["status"] != "TERMINATED" and _supervisor_state(p).get("launches")]


def _job_of(pod: dict) -> str:
    return pod["name"].removeprefix("pistachio-job-").rsplit("-", 1)[0]


def _controller_pid(admin, pod_id: str) -> int | None:  # type: ignore[no-untyped-def]
    for pid in admin.pod_processes(pod_id):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pistachio_infra.campaign.controller" in cmdline:
            return pid
    return None


def test_a_killed_controller_loses_no_job_and_a_second_detach_adopts_the_running_one(sandbox_factory, tmp_path):
    from pistachio_infra.sandbox.control import Admin

    sandbox = sandbox_factory()
    admin = Admin(sandbox)
    camp = write_campaign(tmp_path, jobs=3, budget=2.0, max_concurrent=2)
    text = camp.read_text().replace('comfyui_loras_dir = "loras"', 'comfyui_loras_dir = "loras"\n'
                                                                    'hf_namespace = "sandbox-user"')
    camp.write_text(text)
    jobs = ["char0", "char1", "char2"]
    release = tmp_path / "release"  # the first controller's job pods hold after launching training until it exists
    assert cli("campaign", "run", str(camp), "--detach",
               env={"PISTACHIO_PAUSE_AT": f"train-launched:@{release}"}).returncode == 0
    (first,) = _controllers(admin)
    # both running jobs (concurrency 2) past their upload, training, held before they publish
    wait_until(lambda: len(_training(admin)) == 2, 900, "two job pods' supervisors training")
    pid = wait_until(lambda: _controller_pid(admin, first["id"]), 120, "the controller's process")
    running = {_job_of(p) for p in _training(admin)}
    os.kill(pid, signal.SIGKILL)  # the controller dies (killed, preempted): its job pods do not
    killed_at = time.time()
    wait_until(lambda: _controller_pid(admin, first["id"]) is None, 60, "the controller gone")

    again = cli("campaign", "run", str(camp), "--detach")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "adopted" in again.stdout, again.stdout

    def adopted() -> list[str]:  # the new controller's live status (over SSH) names the job pods it watches
        status = cli("campaign", "status", str(camp), "--json")
        campaigns = json.loads(status.stdout)["campaigns"] if status.returncode == 0 else []
        return [job for c in campaigns for job in c.get("managed", {}).get("adopted", [])]

    assert set(wait_until(adopted, 900, "the new controller adopting the running job pods", interval=2)) == running
    release.touch()  # only now may the adopted pods publish: their results are the adopted ones
    wait_until(lambda: not live_pods(admin) and all(_published(sandbox, j) for j in jobs), 1500,
               "every job published and every pod terminated")
    assert len(_controllers(admin)) == 2
    # no job trained twice: a job that was training when the controller died got no new pod
    for pod in _job_pods(admin):
        assert not (_job_of(pod) in running and pod["created_at"] > killed_at), f"{pod['name']} trains again"
    for job in jobs:
        result = _published(sandbox, job)
        assert result["campaign"] == "test-camp" and len(result["launches"]) == 1
    billed = admin.billing()
    assert sum(billed.values()) <= 2.0
    status = cli("campaign", "status", str(camp), "--json")
    (c,) = json.loads(status.stdout)["campaigns"]
    assert c["status"] == "done" and c["managed"]["prior_usd"] > 0  # the lost controller's pods are counted
    assert set(c["managed"]["adopted"]) == running
    assert all(j["status"] == "done" for j in c["jobs"])


def test_detach_without_a_durable_destination_is_refused_before_renting(sandbox, sandbox_admin, tmp_path):
    camp = write_campaign(tmp_path, jobs=1)  # no hf_namespace: nothing to publish to, nothing to adopt from
    done = cli("campaign", "run", str(camp), "--detach")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no durable destination" in done.stderr and "hf_namespace" in done.stderr
    assert sandbox_admin.pods() == []
