"""`pistachio-infra train` end to end, as a real subprocess against the sandbox: clean run, bad input, captioner
failures, a curve that never converges, two runs at once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import CLI, live_pods, wait_until

from .conftest import FAKE_SECRETS, cli, files_containing, kill, start_cli, write_project

pytestmark = pytest.mark.slow


def _open_lora(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        return len(list(handle.keys()))


def test_clean_run_installs_the_lora_writes_the_report_and_leaves_nothing(sandbox, sandbox_admin, tmp_path, state):
    project = write_project(tmp_path / "proj", wandb_project="pip-demo")
    done = cli("train", "pip", "--project", str(project), env=FAKE_SECRETS)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout

    loras = list((tmp_path / "proj" / "ComfyUI" / "models" / "loras").glob("*.safetensors"))
    assert len(loras) == 1 and loras[0].name.startswith("Pip_pip7_step")
    assert _open_lora(loras[0]) > 0
    step = int(loras[0].stem.rsplit("step", 1)[1])
    assert state.result("select")["step"] == step

    reports = list((tmp_path / "proj" / "runs" / "pip").glob("*/report.md"))
    assert len(reports) == 1
    folder = reports[0].parent
    assert (folder / "loss.png").stat().st_size > 0
    assert {p.name for p in (folder / "configs").iterdir()} >= {"train.toml", "dataset.toml", "eval_dataset.toml"}
    assert len(list((folder / "captions").glob("*.txt"))) == 8
    text = reports[0].read_text()
    assert f"step {step}" in text and "| train |" in text and "billed" in text
    assert "https://wandb.ai/" in out  # the run URL is printed when wandb is on
    # issue 15 item 7: the wandb run is named after the job and this run, and its link is in the report
    assert f'wandb_run_name = "pip-{folder.name}"' in (folder / "configs" / "train.toml").read_text()
    assert f"View run pip-{folder.name} at: https://wandb.ai/" in (folder / "logs" / "train.log").read_text()
    assert "- wandb: https://wandb.ai/" in text

    assert live_pods(sandbox_admin) == [] and len(sandbox_admin.pods()) == 1
    # nothing written anywhere (state, work files, report, LoRA folder, sandbox) holds a secret
    assert files_containing([tmp_path], list(FAKE_SECRETS.values())) == []
    # the training TOML DiffusionPipe copies into checkpoint folders was never downloaded
    assert not [p for p in (tmp_path / "proj").rglob("*.toml") if p.parent.name.startswith("step")]
    assert not list((tmp_path / "proj" / "runs").rglob("train.toml.*"))

    # wandb on but no key: refused in preflight, before any pod
    again = cli("train", "pip", "--project", str(project), env={"WANDB_API_KEY": ""})
    assert again.returncode != 0 and "WANDB_API_KEY is not set" in again.stderr
    assert len(sandbox_admin.pods()) == 1


@pytest.mark.parametrize("problem", ["too-few", "corrupt"])
def test_bad_dataset_is_refused_before_any_pod(sandbox, sandbox_admin, tmp_path, problem):
    project = write_project(tmp_path / "proj", images=8 if problem == "corrupt" else 3)
    if problem == "corrupt":
        (tmp_path / "proj" / "images" / "pip_02.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 3  # bad data (errors.EXIT_CONFIG)
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "nothing was uploaded or rented" in line
    assert ("pip_02.png" in line) if problem == "corrupt" else ("at least 5" in line)
    assert sandbox_admin.pods() == []  # not one pod, ever


def test_captioner_failures_are_retried_then_dropped_and_named(sandbox_factory, tmp_path, state):
    from pistachio_infra.sandbox.control import Admin

    info = sandbox_factory({"standin": {"captioner": {"fail_images": ["pip_03.png"]}}})
    project = write_project(tmp_path / "proj", images=10)
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "retrying them once" in done.stdout
    assert state.result("caption")["dropped"] == ["pip_03.png"]
    folder = next((tmp_path / "proj" / "runs" / "pip").iterdir())
    captions = {p.name for p in (folder / "captions").glob("*.txt")}
    assert "pip_03.txt" not in captions and len(captions) == 9
    assert all(p.read_text().startswith("pip7, ") for p in (folder / "captions").glob("*.txt"))
    assert "pip_03.png" in (folder / "report.md").read_text()
    # the dropped image is in neither side of the split
    split = state.result("split")
    assert "pip_03.png" not in split["train"] + split["eval"] and len(split["train"] + split["eval"]) == 9
    assert live_pods(Admin(info)) == []


def test_captioner_failing_on_too_many_images_is_an_error_naming_them(sandbox_factory, tmp_path):
    from pistachio_infra.sandbox.control import Admin

    info = sandbox_factory({"standin": {"captioner": {"fail_images": ["pip_0[0-5].png"]}}})
    project = write_project(tmp_path / "proj", images=10)
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode != 0
    line = done.stderr.strip().splitlines()[-1]
    assert "could not caption 6 of 10" in line and "pip_00.png" in line and "pip_05.png" in line
    assert live_pods(Admin(info)) == []


def test_user_captions_are_kept_and_only_the_rest_is_captioned(sandbox, sandbox_admin, tmp_path, state):
    project = write_project(tmp_path / "proj")
    images = tmp_path / "proj" / "images"
    for i in range(5):
        (images / f"pip_{i:02d}.txt").write_text(f"pip7, my own caption {i}")
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert state.result("caption")["user_captions"] == 5 and state.result("caption")["captioned"] == 3
    folder = next((tmp_path / "proj" / "runs" / "pip").iterdir())
    assert (folder / "captions" / "pip_01.txt").read_text() == "pip7, my own caption 1"
    assert (images / "pip_01.txt").read_text() == "pip7, my own caption 1"  # the user's folder is never written
    assert not (images / "pip_07.txt").exists()


def test_curve_that_never_converges_chooses_the_last_step_with_a_warning(sandbox_factory, tmp_path, state):
    from pistachio_infra.sandbox.control import Admin

    info = sandbox_factory({"standin": {"trainer": {"min_at_fraction": 3.0, "noise": 0.002}}})
    project = write_project(tmp_path / "proj", epochs=12)
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    chosen = state.result("select")
    assert chosen["verdict"] == "undertrained"
    assert chosen["step"] == state.result("train")["steps"]  # the last step
    assert "warning:" in done.stdout and "still falling" in done.stdout
    assert live_pods(Admin(info)) == []


def test_a_second_run_of_the_same_job_is_refused_naming_the_first(sandbox, sandbox_admin, tmp_path, state):
    project = write_project(tmp_path / "proj")
    first = start_cli("train", "pip", "--project", str(project), env={"PISTACHIO_PAUSE_AT": "upload:60"})
    try:
        wait_until(lambda: state.stage("upload") == "running", 120, "the upload stage", first)
        second = cli("train", "pip", "--project", str(project), timeout=60)
        assert second.returncode != 0
        assert f"already running (pid {first.pid})" in second.stderr
    finally:
        kill(first)
    done = cli("train", "pip", "--project", str(project))  # the killed run resumes and finishes
    assert done.returncode == 0, done.stdout + done.stderr
    assert live_pods(sandbox_admin) == [] and len(sandbox_admin.pods()) == 1


def test_demo_runs_the_whole_pipeline(sandbox, sandbox_admin, tmp_path):
    done = cli("demo", "--images", "10", "--epochs", "6")
    assert done.returncode == 0, done.stdout + done.stderr
    loras = list((tmp_path / "demo-project" / "ComfyUI" / "models" / "loras").glob("Pip_pip7_step*.safetensors"))
    assert len(loras) == 1 and _open_lora(loras[0]) > 0
    report = next((tmp_path / "demo-project" / "runs" / "pip").glob("*/report.md"))
    assert str(report) in done.stdout.replace("\n", "")
    # the samples, with and without the LoRA, rendered on a ComfyUI pod of the sandbox: the demo has no ComfyUI
    assert (report.parent / "samples.png").stat().st_size > 0
    assert "(samples.png)" in report.read_text() and "(samples/00-with.png)" in report.read_text()
    assert live_pods(sandbox_admin) == []
    assert sorted(p["name"].split("-")[1] for p in sandbox_admin.pods()) == ["comfyui", "job"]


def test_the_job_budget_caps_the_pods_watchdog_runtime(sandbox, sandbox_admin, tmp_path):
    from pistachio_infra.endpoints import resolve_cloud
    from pistachio_infra.pods.offers import live_offers
    from pistachio_infra.runpod import connect
    from pistachio_infra.state import Store

    dearest = max(o.price_per_hr for o in live_offers(connect(resolve_cloud()), ["a6000", "a40"]) if o.price_per_hr)
    project = write_project(tmp_path / "proj", budget_usd=0.05)
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "budget $0.05" in done.stdout
    pods = Store().pods(cloud="sandbox")  # more than one when a pod slow to answer under load was replaced
    assert pods
    cap_s = 0.05 / dearest * 3600  # what $0.05 buys on the dearer of the job's two classes, not the 12 h default
    for pod in pods:
        assert pod.watchdog_deadline is not None
        assert pod.watchdog_deadline - pod.created_at <= cap_s + 5
    assert live_pods(sandbox_admin) == []


def _pod_runs(admin) -> list[Path]:  # type: ignore[no-untyped-def]
    """DiffusionPipe run folders (output_dir/<timestamp>) on the sandbox's pods, read from their workspaces."""
    return sorted(d for p in admin.pods() for d in Path(p["workspace"]).glob("**/jobs/pip/output/*") if d.is_dir())


def test_a_trainer_that_makes_its_run_folder_before_the_client_looks_is_followed(sandbox, sandbox_admin, tmp_path,
                                                                                 state):
    """The run-folder race, made certain: the CLI is held right after the launch until the trainer has created its
    run folder. A client that lists the "folders from before" only after the launch takes the new one for an old one
    ("DiffusionPipe created no run folder") after a complete, paid training."""
    project = write_project(tmp_path / "proj")
    release = tmp_path / "release"
    hold = {"PISTACHIO_PAUSE_AT": f"train-launched:@{release}"}
    proc = start_cli("train", "pip", "--project", str(project), env=hold)
    try:
        runs = wait_until(lambda: _pod_runs(sandbox_admin), 180, "the trainer's run folder", proc)
        release.touch()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            kill(proc)
    assert proc.returncode == 0, out
    assert state.result("train")["run"] == runs[0].name
    assert live_pods(sandbox_admin) == []


def test_a_client_killed_right_after_the_launch_reattaches_to_that_training(sandbox, sandbox_admin, tmp_path, state):
    """Killed before it recorded the run folder: the rerun still knows which folders predate its launch, so it
    follows the training it started instead of killing it and training again."""
    project = write_project(tmp_path / "proj")
    release = tmp_path / "release"
    hold = {"PISTACHIO_PAUSE_AT": f"train-launched:@{release}"}
    proc = start_cli("train", "pip", "--project", str(project), env=hold)
    try:
        runs = wait_until(lambda: _pod_runs(sandbox_admin), 180, "the trainer's run folder", proc)
    finally:
        kill(proc)
    # no --yes and no terminal: a rerun that only re-attaches to the pod it already rents has nothing to ask
    done = subprocess.run([CLI, "train", "pip", "--project", str(project)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, env={**os.environ, "PISTACHIO_PAUSE_AT": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already rented for this run: re-attaching, nothing new to confirm" in done.stdout
    assert "re-attaching to the training" in done.stdout or "already finished" in done.stdout
    assert state.result("train")["run"] == runs[0].name and len(state.events("train_launch")) == 1
    assert live_pods(sandbox_admin) == []


def test_a_published_run_is_pulled_into_comfyui_without_renting(sandbox, sandbox_admin, tmp_path, state):
    """Issue 14 item 3/4: with hf_namespace the run publishes a private <ns>/<job>-lora repo (adapter, config,
    loss plot, captions, report, model card) to the sandbox's hub stand-in; `pull` installs it, renting nothing."""
    import tomlkit
    from huggingface_hub import HfApi

    token = "hf_" + "p" * 24  # built at run time: no token-shaped literal in the repo
    project = write_project(tmp_path / "proj")
    doc = tomlkit.parse(project.read_text())
    doc["project"]["hf_namespace"] = "sandbox-user"
    project.write_text(tomlkit.dumps(doc))
    done = cli("train", "pip", "--project", str(project), env={"HF_TOKEN": token})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "durable result: the private HF repo sandbox-user/pip-lora" in done.stdout
    step = state.result("select")["step"]
    api = HfApi(endpoint=sandbox.hf_endpoint, token=token)
    info = api.model_info("sandbox-user/pip-lora")
    assert info.private
    files = {s.rfilename for s in info.siblings}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "report.md"} <= files
    card = Path(api.hf_hub_download("sandbox-user/pip-lora", "README.md", cache_dir=str(tmp_path / "c"))).read_text()
    assert "base_model: Wan-AI/Wan2.1-T2V-14B" in card and "instance_prompt: pip7" in card
    assert f"step {step}" in card and token not in card
    loras = tmp_path / "proj" / "ComfyUI" / "models" / "loras"
    for old in loras.glob("*.safetensors"):
        old.unlink()
    pods_before = len(sandbox_admin.pods())
    pulled = cli("pull", "pip", "--project", str(project), env={"HF_TOKEN": token})
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert len(sandbox_admin.pods()) == pods_before  # nothing rented
    installed = list(loras.glob("*.safetensors"))
    assert len(installed) == 1 and _open_lora(installed[0]) > 0
    assert (tmp_path / "proj" / "runs" / "pip" / "published" / "report.md").is_file()
    assert live_pods(sandbox_admin) == []
