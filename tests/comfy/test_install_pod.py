"""`comfy resolve --pod --install` end to end against a sandbox pod: a stand-in ComfyUI (tests/comfy/standin_comfyui.py)
running as the pod's "comfyui" job, stand-in node packs served as local git repos through a ComfyUI-Manager
database served over HTTP, models from the HF hub stand-in. The first run installs packs (one pinned to an older
commit) and downloads models into the right folders with sha256 checks, then restarts ComfyUI; the second run finds
everything present and downloads nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from pistachio_infra.comfy.database import shipped_dir
from pistachio_infra.sandbox.hf import create_repo, request_log
from pistachio_infra.sandbox.hf.seed import _lora

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "pistachio-infra")
FAST_ENV = {
    "PISTACHIO_POD_POLL_S": "0.2",
    "PISTACHIO_POD_READY_TIMEOUT_S": "8",
    "PISTACHIO_POD_TERMINATE_TIMEOUT_S": "20",
    "PISTACHIO_POD_LOOKUP_S": "2",
    "PISTACHIO_WATCHDOG_POLL_S": "0.5",
    "PISTACHIO_WATCHDOG_HEARTBEAT_S": "0.5",
}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    full.pop("PISTACHIO_COMFY_DB", None)
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=full)


def git(*args: str, cwd: Path) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_pack(root: Path, name: str, versions: list[list[str]]) -> list[str]:
    """A node pack repo with one commit per version (each a list of node class names); returns the commit shas."""
    repo = root / name
    repo.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=repo)
    shas = []
    for nodes in versions:
        mapping = ", ".join(f'"{n}": type("{n}", (), {{}})' for n in nodes)
        (repo / "__init__.py").write_text(f"NODE_CLASS_MAPPINGS = {{{mapping}}}\n")
        (repo / "requirements.txt").write_text("numpy\n")  # already in the sandbox pod image
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", f"nodes {nodes}", cwd=repo)
        shas.append(git("rev-parse", "HEAD", cwd=repo))
    return shas


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
    (comfy / "custom_nodes").mkdir(parents=True)
    for folder in ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "upscale_models"):
        (comfy / "models" / folder).mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("standin_comfyui.py"), comfy / "main.py")

    packs = tmp_path / "packs"
    pinned, newest = make_pack(packs, "pistachio-standin-pack", [["StandinSampler"], ["StandinSampler", "StandinV2"]])
    make_pack(packs, "standin-video-pack", [["StandinVideoCombine"]])
    sampler_url, video_url = (packs / "pistachio-standin-pack").as_uri(), (packs / "standin-video-pack").as_uri()
    with gzip.open(shipped_dir() / "model-list.json.gz") as fh:
        model_list = fh.read()
    db = static_server({
        "/db/extension-node-map.json": json.dumps({
            "https://github.com/comfyanonymous/ComfyUI": [["UNETLoader", "VAELoader", "CLIPLoader"], {}],
            sampler_url: [["StandinSampler", "StandinV2"], {"title_aux": "Standin sampler"}],
            video_url: [["StandinVideoCombine"], {"title_aux": "Standin video"}],
        }).encode(),
        "/db/custom-node-list.json": json.dumps({"custom_nodes": [
            {"title": "Pistachio stand-in sampler", "files": [sampler_url], "install_type": "git-clone"},
        ]}).encode(),
        "/db/model-list.json": model_list,
    })
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
    from pistachio_infra.runpod import connect
    from pistachio_infra.state import Store
    from pistachio_infra.teardown import connect_remote

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
        first = cli("comfy", "resolve", str(workflow), "--pod", name, "--install", "--yes", env=env)
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
        found = {p.relative_to(comfy / "models").as_posix() for p in (comfy / "models").rglob("*") if p.is_file()}
        assert found == expected
        assert sha256(comfy / "models/loras/zebrafinch_char.safetensors") == hashlib.sha256(lora).hexdigest()
        # the restarted ComfyUI loaded the new packs: the pinned commit's nodes only
        system = stats("/system_stats")
        assert system["system"]["pid"] != pid_before and system["import_failures"] == {}
        nodes = stats("/object_info")
        assert "StandinSampler" in nodes and "StandinVideoCombine" in nodes and "StandinV2" not in nodes

        downloads = [r for r in request_log(sandbox.home / "hf") if r["method"] == "GET" and "/resolve/" in r["path"]]
        assert len(downloads) >= 7
        second = cli("comfy", "resolve", str(workflow), "--pod", name, "--install", "--yes", env=env)
        out2 = second.stdout + second.stderr
        assert second.returncode == 0, out2
        assert "everything the workflow needs is present" in out2 and "nothing to install" in out2
        assert "0 node pack(s) to install, 0 model(s) to download" in out2
        after = [r for r in request_log(sandbox.home / "hf") if r["method"] == "GET" and "/resolve/" in r["path"]]
        assert after == downloads  # nothing downloaded the second time
        assert stats("/system_stats")["system"]["pid"] == system["system"]["pid"]  # and no restart
        remote.close()
