"""`comfy resolve --pod --install` end to end against a sandbox pod: the sandbox's stand-in ComfyUI (its
`ComfyUI` stand-in repo, cloned into the pod's workspace) running as the pod's "comfyui" job, stand-in node packs
served as local git repos through a ComfyUI-Manager database served over HTTP, models from the HF hub stand-in. The
first run installs packs (one pinned to an older commit) and downloads models into the right folders with sha256
checks, then restarts ComfyUI; the second run finds everything present and downloads nothing."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path

import pytest

from pistachio_infra.sandbox.hf import create_repo, request_log
from pistachio_infra.sandbox.hf.seed import _lora

from .podtools import FAST_ENV, cli, git, make_pack, manager_db, model_files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pod(sandbox, sandbox_admin, monkeypatch):
    for k, v in FAST_ENV.items():
        monkeypatch.setenv(k, v)
    up = cli("up", "--gpu", "a6000", "--no-models", "--no-bootstrap", "--label", "comfy")
    assert up.returncode == 0, up.stdout + up.stderr
    name = re.search(r"ready\s+(pistachio-up-comfy-[0-9a-f]{6}) \((\w+)\)", up.stdout).group(1)
    (record,) = [p for p in sandbox_admin.pods() if p["status"] != "TERMINATED"]
    yield name, record
    cli("down", name)


def test_install_into_a_sandbox_pod_then_nothing_to_do(pod, sandbox, static_server, tmp_path):
    name, record = pod
    workspace = Path(record["workspace"])
    comfy = workspace / "ComfyUI"
    git("clone", "-q", sandbox.repos["ComfyUI"].url, str(comfy), cwd=tmp_path)  # the sandbox's stand-in ComfyUI

    packs = tmp_path / "packs"
    pinned, newest = make_pack(packs, "pistachio-standin-pack", [["StandinSampler"], ["StandinSampler", "StandinV2"]])
    make_pack(packs, "standin-video-pack", [["StandinVideoCombine"]])
    sampler_url, video_url = (packs / "pistachio-standin-pack").as_uri(), (packs / "standin-video-pack").as_uri()
    db = manager_db(
        static_server,
        {sampler_url: (["StandinSampler", "StandinV2"], "Standin sampler"),
         video_url: (["StandinVideoCombine"], "Standin video")},
        listed={sampler_url: "Pistachio stand-in sampler"},
    )
    lora = _lora("zebrafinch")
    create_repo(sandbox.home / "hf", "pistachio-tests/zebrafinch-lora", {"zebrafinch_char.safetensors": lora})

    lightning = "https://huggingface.co/ByteDance/SDXL-Lightning/resolve/main/sdxl_lightning_4step_lora.safetensors"
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps({"nodes": [
        {"id": 1, "type": "UNETLoader", "widgets_values": ["wan2.1_t2v_1.3B_fp16.safetensors", "default"]},
        {"id": 2, "type": "VAELoader", "widgets_values": ["wan_2.1_vae.safetensors"]},
        {"id": 3, "type": "CLIPLoader", "widgets_values": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan", "default"]},
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["SDXL\\sd_xl_base_1.0.safetensors"]},
        {"id": 5, "type": "LoraLoader", "widgets_values": ["sdxl_lightning_4step_lora.safetensors", 1, 1],
         "properties": {"models": [{"name": "sdxl_lightning_4step_lora.safetensors", "url": lightning,
                                    "directory": "loras"}]}},
        {"id": 6, "type": "UpscaleModelLoader", "widgets_values": ["4x-UltraSharp.pth"]},
        {"id": 7, "type": "LoraLoaderModelOnly", "widgets_values": ["zebrafinch_char.safetensors", 0.8]},
        {"id": 8, "type": "StandinSampler", "properties": {"cnr_id": "pistachio-standin-pack", "ver": pinned}},
        {"id": 9, "type": "StandinVideoCombine", "widgets_values": {"frame_rate": 16}},
        {"id": 10, "type": "Note", "widgets_values": ["models: see the links"]},
    ], "links": []}))

    from contextlib import closing

    from pistachio_infra.comfy.target import start_comfyui
    from pistachio_infra.endpoints import resolve_cloud
    from pistachio_infra.pods.lifecycle import ReadyPod
    from pistachio_infra.pods.session import connect_remote
    from pistachio_infra.runpod import connect
    from pistachio_infra.state import Store

    port = free_port()
    with closing(Store()) as store:
        live = connect(resolve_cloud()).find_pod_by_name(name)
        remote = connect_remote(store, ReadyPod(name, live, None, [], 0, 0), timeout=30)
        start_comfyui(remote, str(remote.workspace) + "/ComfyUI", port=port, timeout=30)

        def stats(path: str) -> dict:
            out = remote.run(f"python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                             f"\"http://127.0.0.1:{port}{path}\").read().decode())'")
            return json.loads(out.stdout)

        pid_before = stats("/system_stats")["system"]["pid"]
        assert "StandinSampler" not in stats("/object_info")

        env = {"PISTACHIO_COMFY_DB_URL": f"{db.url}/db"}
        first = cli("comfy", "resolve", str(workflow), "--pod", name, "--install", "--best", env=env)
        out = first.stdout + first.stderr
        assert first.returncode == 0, out
        assert "ComfyUI restarted" in out and "2 node pack(s) installed, 7 model(s) downloaded" in out
        assert "7 sha256-verified" in out

        # packs: cloned, the pinned one at the commit the workflow was saved with
        assert git("rev-parse", "HEAD", cwd=comfy / "custom_nodes" / "pistachio-standin-pack") == pinned != newest
        assert (comfy / "custom_nodes" / "standin-video-pack" / "__init__.py").exists()
        # models: each in the folder its loader reads, under the name the workflow uses
        expected = {
            "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors",
            "vae/wan_2.1_vae.safetensors",
            "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
            "checkpoints/SDXL/sd_xl_base_1.0.safetensors",
            "loras/sdxl_lightning_4step_lora.safetensors",
            "upscale_models/4x-UltraSharp.pth",
            "loras/zebrafinch_char.safetensors",
        }
        assert model_files(comfy / "models") == expected
        assert sha256(comfy / "models/loras/zebrafinch_char.safetensors") == hashlib.sha256(lora).hexdigest()
        # the restarted ComfyUI loaded the new packs: the pinned commit's nodes only
        system = stats("/system_stats")
        assert system["system"]["pid"] != pid_before and system["import_failures"] == {}
        nodes = stats("/object_info")
        assert "StandinSampler" in nodes and "StandinVideoCombine" in nodes and "StandinV2" not in nodes

        downloads = [r for r in request_log(sandbox.home / "hf") if r["method"] == "GET" and "/resolve/" in r["path"]]
        assert len(downloads) >= 7
        second = cli("comfy", "resolve", str(workflow), "--pod", name, "--install", "--best", env=env)
        out2 = second.stdout + second.stderr
        assert second.returncode == 0, out2
        assert "everything the workflow needs is present" in out2 and "nothing to install" in out2
        assert "0 node pack(s) to install, 0 model(s) to download" in out2
        after = [r for r in request_log(sandbox.home / "hf") if r["method"] == "GET" and "/resolve/" in r["path"]]
        assert after == downloads  # nothing downloaded the second time
        assert stats("/system_stats")["system"]["pid"] == system["system"]["pid"]  # and no restart
        remote.close()
