"""Issue 20: `train` ends with samples rendered through a ready ComfyUI (here the stand-in, run locally as "the team
ComfyUI"): each prompt with the LoRA and, same seed, without it; the report, the published model card and the
contact sheet beside loss.png show them; `--no-verify` skips the stage and the estimate before renting changes.
Upstream behaviour the stand-in imitates: tests/verify/test_samples.py (ComfyUI nodes.py, execution.py, server.py)."""

from __future__ import annotations

import re
from pathlib import Path

import comfyui_standin
import pytest
import tomlkit
from helpers import live_pods, wait_until
from PIL import Image

from .conftest import cli, start_cli, write_project

pytestmark = pytest.mark.slow


@pytest.fixture
def team_comfy(tmp_path):
    server = comfyui_standin.start(comfyui_standin.clone(tmp_path / "team" / "ComfyUI"))
    yield server
    server.stop()


def _project(tmp_path: Path, comfy, **job) -> Path:
    project = write_project(tmp_path / "proj", loras=str(comfy.loras), **job)
    doc = tomlkit.parse(project.read_text())
    doc["project"]["comfyui_url"] = comfy.url
    project.write_text(tomlkit.dumps(doc))
    return project


def _estimate(out: str) -> tuple[float, int]:
    """(USD, seconds) of the "estimate before renting" line."""
    found = re.search(r"estimate before renting: ~\$([\d.]+) and ~(?:(\d+)h)?(\d+)m(\d+)s", out)
    assert found, out
    hours, minutes, seconds = (int(g or 0) for g in found.groups()[1:])
    return float(found.group(1)), hours * 3600 + minutes * 60 + seconds


def test_train_renders_samples_with_and_without_the_lora_into_report_and_card(sandbox, tmp_path, state, team_comfy):
    token = "hf_" + "v" * 24
    project = _project(tmp_path, team_comfy, sample_prompts=["pip7 on a beach", "a portrait in the rain"])
    doc = tomlkit.parse(project.read_text())
    doc["project"]["hf_namespace"] = "sandbox-user"
    project.write_text(tomlkit.dumps(doc))
    done = cli("train", "pip", "--project", str(project), env={"HF_TOKEN": token})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"verify: 2 still(s) with and without the LoRA on the ComfyUI at {team_comfy.url}" in done.stdout

    result = state.result("verify")
    assert result["where"] == "comfyui" and len(result["samples"]) == 2
    prompts = [s["prompt"] for s in result["samples"]]
    assert prompts == ["pip7 on a beach", "pip7, a portrait in the rain"]  # the trigger word added where missing
    folder = Path(result["folder"])
    for sample in result["samples"]:
        with Image.open(folder / sample["with_lora"]) as a, Image.open(folder / sample["without"]) as b:
            assert a.size == b.size == (512, 512) and a.tobytes() != b.tobytes()
            assert '"loras": [["' in a.info["pistachio_standin"] and '"loras": []' in b.info["pistachio_standin"]

    report = next((tmp_path / "proj" / "runs" / "pip").glob("*/report.md"))
    run = report.parent
    assert (run / "samples.png").is_file() and (run / "loss.png").is_file()  # the contact sheet beside loss.png
    text = report.read_text()
    assert "## Samples" in text and "| pip7 on a beach | 42 | ![without](samples/00-without.png) | " \
                                     "![with](samples/00-with.png) |" in text
    for link in re.findall(r"\]\((samples/[^)]+)\)", text):
        assert (run / link).is_file(), link
    assert "| verify |" in text  # its time, in the timings table

    from huggingface_hub import HfApi

    api = HfApi(endpoint=sandbox.hf_endpoint, token=token)
    files = {s.rfilename for s in api.model_info("sandbox-user/pip-lora").siblings}
    assert {"samples.png", "samples/00-with.png", "samples/00-without.png", "samples/samples.json"} <= files
    card = Path(api.hf_hub_download("sandbox-user/pip-lora", "README.md", cache_dir=str(tmp_path / "c"))).read_text()
    assert "## Samples" in card and "![with](samples/01-with.png)" in card and "![without](samples/01-without.png)" \
        in card
    assert "url: samples/00-with.png" in card  # the Hub's widget gallery
    assert token not in card

    # the dashboard's job page shows them side by side and serves only the listed files
    from starlette.testclient import TestClient

    from pistachio_infra.dashboard.app import create_app
    from pistachio_infra.dashboard.data import DashboardData

    data = DashboardData()
    job = data.job(state.job_id())
    assert job is not None and [r["prompt"] for r in job["samples"]["rows"]] == prompts
    with TestClient(create_app(data, "t0k")) as http:
        page = http.get(f"/job/{job['id']}?token=t0k").text
        assert 'class="sample-with" src="/files/' in page and "samples~00-without.png" in page
        image = http.get(f"/files/{job['id']}/samples~00-with.png?token=t0k")
        assert image.status_code == 200 and image.content == (folder / "00-with.png").read_bytes()
        assert http.get(f"/files/{job['id']}/samples~samples.json?token=t0k").status_code == 404


def test_no_verify_skips_the_stage_and_lowers_the_estimate(sandbox, tmp_path, state, team_comfy):
    project = _project(tmp_path, team_comfy)
    skipped = cli("train", "pip", "--project", str(project), "--no-verify")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "verify: skipped (--no-verify)" in skipped.stdout
    assert state.result("verify") == {"pod": None, "where": "skipped", "reason": "--no-verify", "url": None,
                                      "folder": None, "sheet": None, "samples": [], "seconds": 0.0}
    report = next((tmp_path / "proj" / "runs" / "pip").glob("*/report.md"))
    assert "No samples: skipped (--no-verify)." in report.read_text()
    assert not (report.parent / "samples.png").exists()
    without = _estimate(skipped.stdout)

    again = cli("train", "pip", "--project", str(project), "--restart")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "verify: 4 still(s)" in again.stdout
    with_verify = _estimate(again.stdout)
    assert with_verify[1] > without[1]  # the samples' render time is in the estimate; the team ComfyUI adds no rent
    assert len(state.result("verify")["samples"]) == 4


def test_a_model_file_gone_from_the_comfyui_fails_verify_with_comfyuis_error(sandbox, tmp_path, state, team_comfy):
    """The plan saw the files (before renting); the VAE is gone when verify queues: ComfyUI's own validation error,
    naming the file, ends the run; a rerun after putting it back finishes from verify."""
    project = _project(tmp_path, team_comfy)
    release = tmp_path / "go"
    proc = start_cli("train", "pip", "--project", str(project), env={"PISTACHIO_PAUSE_AT": f"verify:@{release}"})
    wait_until(lambda: state.stage("verify") is not None, 240, "the run to reach verify", proc)
    vae = team_comfy.root / "models" / "vae" / comfyui_standin.WAN["vae"]
    vae.rename(vae.with_name("moved-away.bin"))
    release.touch()
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode != 0, out
    assert "VAELoader (node 9): Value not in list: vae_name: 'wan_2.1_vae.safetensors' not in" in out
    assert state.stage("verify") == "failed"

    vae.with_name("moved-away.bin").rename(vae)
    again = cli("train", "pip", "--project", str(project))
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(state.result("verify")["samples"]) == 4


def test_verify_on_pod_rents_a_comfyui_pod_only_when_asked(sandbox, sandbox_admin, tmp_path, state):
    """No ready ComfyUI: without --verify-on-pod the stage is skipped with the pod's quote (no download unasked);
    with it, a ComfyUI pod gets the Wan files the graph names from the hub, renders, and is terminated."""
    project = write_project(tmp_path / "proj")
    plain = cli("train", "pip", "--project", str(project))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "verify: skipped (no ComfyUI with Wan 2.1 is configured" in plain.stdout
    assert "download 21.3 GB (Comfy-Org/Wan_2.1_ComfyUI_repackaged): ask for it with --verify-on-pod" in plain.stdout
    assert len(sandbox_admin.pods()) == 1

    done = cli("train", "pip", "--project", str(project), "--restart", "--verify-on-pod")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on a fresh ComfyUI pod (a6000; downloads 21.3 GB from Comfy-Org/Wan_2.1_ComfyUI_repackaged)" \
        in done.stdout
    result = state.result("verify")
    assert result["where"] == "pod" and len(result["samples"]) == 4
    pods = sandbox_admin.pods()
    assert len(pods) == 3 and live_pods(sandbox_admin) == []
    report = next(p for p in (tmp_path / "proj" / "runs" / "pip").glob("*/report.md") if "## Samples" in
                  p.read_text() and "samples/00-with.png" in p.read_text())
    assert (report.parent / "samples.png").is_file()
