"""`pistachio-infra comfy resolve` on a local ComfyUI folder through the real CLI: bad input, the JSON plan,
--install from the HF hub stand-in into the right folder, and a second run with nothing to do."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from pistachio_infra.sandbox.hf import create_repo
from pistachio_infra.sandbox.hf.seed import _checkpoint

from .conftest import WORKFLOWS

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "pistachio-infra")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_bad_input_is_one_line_without_traceback(tmp_path):
    no_target = cli("comfy", "resolve", str(WORKFLOWS / "t2i_sd15_ui.json"))
    assert no_target.returncode != 0 and "--comfy-dir" in no_target.stderr and "Traceback" not in no_target.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"nodes": [\n  {"id": 1 "type": "KSampler"}\n]}')
    bad = cli("comfy", "resolve", str(broken), "--comfy-dir", str(tmp_path))
    assert bad.returncode != 0 and "line 2 column" in bad.stderr and "Traceback" not in bad.stderr
    choose = cli("comfy", "resolve", str(WORKFLOWS / "t2i_sd15_ui.json"), "--comfy-dir", str(tmp_path),
                 "--choose", "oops")
    assert choose.returncode != 0 and "NAME=CHOICE" in choose.stderr


def test_json_plan_install_and_second_run(tmp_path, hub_root, hub_endpoint):
    checkpoint = _checkpoint("sd15-archive")
    create_repo(hub_root, "Comfy-Org/stable-diffusion-v1-5-archive",
                {"v1-5-pruned-emaonly-fp16.safetensors": checkpoint})
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    env = {"HF_ENDPOINT": hub_endpoint}
    args = ("comfy", "resolve", str(WORKFLOWS / "t2i_sd15_ui.json"), "--comfy-dir", str(comfy))

    plan = cli(*args, "--json", env=env)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    (model,) = data["models"]
    assert model["status"] == "download" and model["how"] == "workflow"
    assert model["dest"] == "models/checkpoints/v1-5-pruned-emaonly-fp16.safetensors"
    assert model["size"] == len(checkpoint) and model["sha256"] == hashlib.sha256(checkpoint).hexdigest()
    assert data["packs"] == [] and data["complete"] and data["download_bytes"] == len(checkpoint)

    first = cli(*args, "--install", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 model(s) downloaded" in first.stdout and "1 sha256-verified" in first.stdout
    got = comfy / "models" / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors"
    assert got.read_bytes() == checkpoint

    second = cli(*args, "--install", env=env)
    assert second.returncode == 0 and "everything the workflow needs is present" in second.stdout
    assert "nothing to install" in second.stdout


def test_unresolved_model_exits_nonzero(tmp_path, hub_endpoint):
    api = cli("comfy", "resolve", str(WORKFLOWS / "t2i_sd15_api.json"), "--comfy-dir", str(tmp_path),
              env={"HF_ENDPOINT": hub_endpoint})
    assert api.returncode == 1 and "v1-5-pruned-emaonly.safetensors" in api.stdout and "unknown" in api.stdout


def test_every_model_looking_value_is_listed_never_dropped(tmp_path, hub_endpoint):
    """Issue 19.6: inputs named differently from LOADERS (`t5_model`, `vae_model` in this API workflow) were lost
    silently, and MultiTalkModelLoader got no folder. Its folder: kijai/ComfyUI-WanVideoWrapper multitalk/nodes.py
    (`model` from folder_paths "diffusion_models")."""
    workflow = {
        "1": {"class_type": "LoadWanVideoT5TextEncoder",
              "inputs": {"t5_model": "umt5-xxl-enc-bf16.safetensors", "precision": "bf16"}},
        "2": {"class_type": "WanVideoVAELoader", "inputs": {"vae_model": "wanvideo\\Wan2_1_VAE_bf16.safetensors"}},
        "3": {"class_type": "MultiTalkModelLoader", "inputs": {"model": "WanVideo/multitalk.safetensors",
                                                               "base_precision": "fp16"}},
        "4": {"class_type": "SomeonesAudioLoader", "inputs": {"weights": "audio/wav2vec2-chinese.bin",
                                                              "clip": ["1", 0]}},
    }
    path = tmp_path / "wan_api.json"
    path.write_text(json.dumps(workflow))
    plan = cli("comfy", "resolve", str(path), "--comfy-dir", str(tmp_path / "ComfyUI"), "--json",
               env={"HF_ENDPOINT": hub_endpoint})
    data = json.loads(plan.stdout)
    found = {m["name"]: m for m in data["models"]}
    assert set(found) == {"umt5-xxl-enc-bf16.safetensors", "wanvideo/Wan2_1_VAE_bf16.safetensors",
                          "WanVideo/multitalk.safetensors", "audio/wav2vec2-chinese.bin"}, data["models"]
    assert found["umt5-xxl-enc-bf16.safetensors"]["folder"] == "text_encoders"
    assert found["wanvideo/Wan2_1_VAE_bf16.safetensors"]["folder"] == "vae"
    assert found["WanVideo/multitalk.safetensors"]["folder"] == "diffusion_models"
    assert found["audio/wav2vec2-chinese.bin"]["folder"] in (None, "unknown")
