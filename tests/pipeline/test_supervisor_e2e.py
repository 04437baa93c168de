"""Issue 14 items 2 and 4: close the laptop. With a durable destination (hf_namespace) everything after the upload
runs on the pod under its supervisor (pods/supervisor.py): a client SIGKILLed and never restarted still gets its
LoRA published (valid safetensors, the chosen checkpoint, a model card) and the pod ends itself; `pull` installs it
renting nothing; a rerun never trains again; `train --detach` returns at once.

The hub stand-in is held to huggingface_hub 1.x's upload calls (create_repo, preupload, commit) elsewhere
(tests/sandbox); here the pod's own huggingface_hub publishes to it. Synchronised on PISTACHIO_PAUSE_AT points the
supervisor honours on the pod (train-launched, select, publish), never on sleeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import live_pods, wait_until

from .conftest import cli, kill, start_cli, write_project

pytestmark = pytest.mark.slow

REPO = "sandbox-user/pip-lora"


def _token() -> str:
    return "hf_" + "s" * 24  # built at run time: no token-shaped literal in the repo


def _project(root: Path) -> Path:
    import tomlkit

    project = write_project(root)
    doc = tomlkit.parse(project.read_text())
    doc["project"]["hf_namespace"] = "sandbox-user"
    project.write_text(tomlkit.dumps(doc))
    return project


def _published(sandbox) -> set[str]:  # type: ignore[no-untyped-def]
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=sandbox.hf_endpoint, token=_token()).model_info(REPO)
    except Exception:
        return set()
    return {s.rfilename for s in info.siblings or []}


def _check_published(sandbox, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    """The repo holds a valid adapter, the chosen checkpoint's, and a model card naming it; returns the result."""
    from huggingface_hub import snapshot_download
    from safetensors import safe_open

    folder = Path(snapshot_download(REPO, token=_token(), endpoint=sandbox.hf_endpoint,
                                    local_dir=str(tmp_path / "check")))
    with safe_open(str(folder / "adapter_model.safetensors"), framework="np") as handle:
        assert list(handle.keys())
    result = json.loads((folder / "pistachio_result.json").read_text())
    chosen = result["select"]
    assert chosen["checkpoint"] in result["train"]["saved"]
    card = (folder / "README.md").read_text()
    assert "base_model: Wan-AI/Wan2.1-T2V-14B" in card and "instance_prompt: pip7" in card
    assert f"step {chosen['step']}" in card and _token() not in card
    return result


def _pull_renting_nothing(sandbox_admin, project: Path) -> None:  # type: ignore[no-untyped-def]
    before = len(sandbox_admin.pods())
    pulled = cli("pull", "pip", "--project", str(project), env={"HF_TOKEN": _token()})
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert len(sandbox_admin.pods()) == before
    assert list((project.parent / "ComfyUI" / "models" / "loras").glob("*.safetensors"))


def _supervisor_at(state, point: str) -> bool:  # type: ignore[no-untyped-def]
    """The watching client saw the pod's supervisor enter `point` (held there by PISTACHIO_PAUSE_AT)."""
    if point == "train-launched":
        return bool(state.events("train_launch"))
    return any(e.get("supervisor") and e.get("stage") == point for e in state.events("stage"))


@pytest.mark.parametrize("point", ["caption", "split", "train-launched", "select", "publish"])
def test_client_killed_at_a_supervised_stage_the_pod_publishes_and_ends_itself(
    sandbox, sandbox_admin, tmp_path, state, point
):
    project = _project(tmp_path / "proj")
    release = tmp_path / "release"
    proc = start_cli("train", "pip", "--project", str(project),
                     env={"HF_TOKEN": _token(), "PISTACHIO_PAUSE_AT": f"{point}:@{release}"})
    try:
        wait_until(lambda: _supervisor_at(state, point), 240, f"the supervisor at {point}", proc)
    finally:
        kill(proc)  # never restarted
    release.touch()
    wait_until(lambda: {"adapter_model.safetensors", "README.md"} <= _published(sandbox), 240,
               "the pod to publish the LoRA on its own")
    wait_until(lambda: not live_pods(sandbox_admin), 120, "the pod to terminate itself")
    result = _check_published(sandbox, tmp_path)
    assert len(result["launches"]) == 1 and len(sandbox_admin.pods()) == 1
    assert {"caption", "split"} <= set(result)  # captioned and split on the pod
    _pull_renting_nothing(sandbox_admin, project)


def test_killed_mid_training_then_rerun_trains_once(sandbox, sandbox_admin, tmp_path, state):
    project = _project(tmp_path / "proj")
    release = tmp_path / "release"
    proc = start_cli("train", "pip", "--project", str(project),
                     env={"HF_TOKEN": _token(), "PISTACHIO_PAUSE_AT": f"train-launched:@{release}"})
    try:
        wait_until(lambda: state.events("train_launch"), 240, "the supervisor's training launch", proc)
    finally:
        kill(proc)
    release.touch()
    done = cli("train", "pip", "--project", str(project), env={"HF_TOKEN": _token(), "PISTACHIO_PAUSE_AT": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "re-attaching to the supervisor" in done.stdout or "finished and published this run" in done.stdout
    assert len(state.events("train_launch")) == 1
    assert len(sandbox_admin.pods()) == 1 and live_pods(sandbox_admin) == []
    assert list((tmp_path / "proj" / "ComfyUI" / "models" / "loras").glob("*.safetensors"))


def test_detach_returns_then_the_pod_publishes_and_ends_itself(sandbox, sandbox_admin, tmp_path, state):
    project = _project(tmp_path / "proj")
    done = cli("train", "pip", "--project", str(project), "--detach", env={"HF_TOKEN": _token()})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "detached from pip" in done.stdout and "pistachio-infra pull pip" in done.stdout
    assert state.events("supervisor")  # launched, then left to the pod
    wait_until(lambda: {"adapter_model.safetensors", "README.md"} <= _published(sandbox), 240,
               "the detached pod to publish")
    wait_until(lambda: not live_pods(sandbox_admin), 120, "the detached pod to terminate itself")
    _check_published(sandbox, tmp_path)
    _pull_renting_nothing(sandbox_admin, project)
    # a rerun installs the published result: no pod, no second training
    rerun = cli("train", "pip", "--project", str(project), env={"HF_TOKEN": _token()})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(sandbox_admin.pods()) == 1 and len(state.events("train_launch")) == 1


def test_detach_without_a_durable_destination_is_refused_before_renting(sandbox, sandbox_admin, tmp_path):
    project = write_project(tmp_path / "proj")
    done = cli("train", "pip", "--project", str(project), "--detach")
    assert done.returncode != 0 and "--detach needs a durable destination" in done.stdout + done.stderr
    assert sandbox_admin.pods() == []


def _ctrl_c_while_training(sandbox_admin, tmp_path: Path, state, grace: str):  # type: ignore[no-untyped-def]
    import os
    import signal

    project = _project(tmp_path / "proj")
    release = tmp_path / "release"
    proc = start_cli("train", "pip", "--project", str(project),
                     env={"HF_TOKEN": _token(), "PISTACHIO_PAUSE_AT": f"train-launched:@{release}",
                          "PISTACHIO_DETACH_GRACE_S": grace})
    wait_until(lambda: _supervisor_at(state, "train-launched"), 240, "the supervisor's training launch", proc)
    os.kill(proc.pid, signal.SIGINT)
    return proc, release


def test_ctrl_c_detaches_and_the_pod_finishes_on_its_own(sandbox, sandbox_admin, tmp_path, state):
    proc, release = _ctrl_c_while_training(sandbox_admin, tmp_path, state, "1")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "Ctrl-C: detached" in out and "pistachio-infra pull pip" in out
    assert live_pods(sandbox_admin)  # not torn down
    release.touch()
    wait_until(lambda: {"adapter_model.safetensors", "README.md"} <= _published(sandbox), 240, "the pod to publish")
    wait_until(lambda: not live_pods(sandbox_admin), 120, "the pod to terminate itself")


def test_a_second_ctrl_c_stops_the_pod_and_tears_down(sandbox, sandbox_admin, tmp_path, state):
    import os
    import signal

    proc, release = _ctrl_c_while_training(sandbox_admin, tmp_path, state, "300")
    wait_until(lambda: any(e.get("detaching") for e in state.events("supervisor")), 60, "the detach prompt", proc)
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0, out
    assert live_pods(sandbox_admin) == []  # torn down by the client, not left to the pod
    release.touch()
    assert _published(sandbox) == set()


def test_results_are_copied_to_the_jobs_network_volume(sandbox, sandbox_admin, tmp_path, state, monkeypatch):
    """Issue 14 item 3: a pod with a network volume (mounted as its workspace, as RunPod does and the sandbox
    imitates: sandbox/cloud.py `workspace`) gets the published folder there too, outliving the pod."""
    from rich.console import Console

    from pistachio_infra.catalog import gpu_class
    from pistachio_infra.config.project import load_project
    from pistachio_infra.endpoints import resolve_cloud
    from pistachio_infra.pipeline.driver import TrainRequest, run_training
    from pistachio_infra.runpod import connect

    path = _project(tmp_path / "proj")
    api = connect(resolve_cloud())
    a6000 = next(g for g in api.list_gpu_types() if g.id == gpu_class("a6000").gpu_type_id)
    dc = next(d.data_center_id for d in a6000.data_centers if d.stock.value != "None")
    volume = api.create_volume("results", 50, dc)
    project = load_project(path)
    monkeypatch.setenv("HF_TOKEN", _token())
    result = run_training(TrainRequest(job=project.job("pip"), project=project, base_dir=path.parent,
                                       network_volume=(volume.id, dc)), Console(quiet=True))
    copies = list((sandbox.home / "volumes" / volume.id / "results" / "pip").glob("*/adapter_model.safetensors"))
    assert len(copies) == 1 and copies[0].read_bytes() == result.lora.read_bytes()
    assert (copies[0].parent / "README.md").is_file() and (copies[0].parent / "pistachio_result.json").is_file()
    assert live_pods(sandbox_admin) == []
