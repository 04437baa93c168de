"""`up --role comfyui --workflow X` end to end through the CLI against the sandbox: ComfyUI (the sandbox's stand-in
repo, pinned like data/sources.toml [repos.ComfyUI]) on a pod with 8188/http mapped to a host port, the workflow's
stand-in node pack and hub models installed, the project's harvested LoRAs copied, the URL answering; `down` leaves
no pod. Bad workflows are refused before any pod exists."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from pistachio_infra.sandbox.hf.seed import _lora

from .podtools import FAST_ENV, cli, make_pack, manager_db, model_files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fast(monkeypatch):
    for key, value in FAST_ENV.items():
        monkeypatch.setenv(key, value)


def project(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A project with two harvested LoRAs: one in a run folder, one in its local comfyui_loras_dir."""
    root = tmp_path / "proj"
    run_lora = root / "runs" / "pip" / "20261127_10-00-00" / "lora" / "pip_wan21_step300.safetensors"
    run_lora.parent.mkdir(parents=True)
    (root / "comfy-loras").mkdir()
    loras = {run_lora.name: _lora("pip"), "mo_wan21_step200.safetensors": _lora("mo")}
    run_lora.write_bytes(loras[run_lora.name])
    (root / "comfy-loras" / "mo_wan21_step200.safetensors").write_bytes(loras["mo_wan21_step200.safetensors"])
    (root / "pistachio.toml").write_text('[project]\nname = "comfy-test"\ncomfyui_loras_dir = "comfy-loras"\n')
    return root, loras


def workflow(path: Path, nodes: list[dict]) -> str:
    path.write_text(json.dumps({"nodes": [{"id": i, **n} for i, n in enumerate(nodes, 1)], "links": []}))
    return str(path)


def test_up_comfyui_with_workflow_then_down(sandbox, sandbox_admin, static_server, fast, tmp_path):
    root, loras = project(tmp_path)
    packs = tmp_path / "packs"
    (pinned,) = make_pack(packs, "pistachio-standin-pack", [["StandinSampler"]])
    pack_url = (packs / "pistachio-standin-pack").as_uri()
    db = manager_db(static_server, {pack_url: (["StandinSampler"], "Standin sampler")})
    wf = workflow(tmp_path / "wan_lora.json", [
        {"type": "UNETLoader", "widgets_values": ["wan2.1_t2v_1.3B_fp16.safetensors", "default"]},
        {"type": "VAELoader", "widgets_values": ["wan_2.1_vae.safetensors"]},
        {"type": "LoraLoaderModelOnly", "widgets_values": ["pip_wan21_step300.safetensors", 1.0]},
        {"type": "StandinSampler", "properties": {"cnr_id": "pistachio-standin-pack", "ver": pinned}},
    ])

    up = cli("up", "--gpu", "4090", "--role", "comfyui", "--workflow", wf, "--project", str(root),
             "--max-hours", "1", env={"PISTACHIO_COMFY_DB_URL": f"{db.url}/db"})
    out = up.stdout + up.stderr
    assert up.returncode == 0, out
    name = re.search(r"ready\s+(pistachio-up-comfyui-[0-9a-f]{6}) \((\w+)\)", out).group(1)
    url = re.search(r"ComfyUI\s+(http://127\.0\.0\.1:(\d+))\s", out)
    assert url, out
    assert "pistachio-infra ssh" in out and "watchdog  terminates it at" in out
    assert "2 LoRA(s) copied, 1 node pack(s) installed, 2 model(s) downloaded" in out

    (record,) = [p for p in sandbox_admin.pods() if p["status"] != "TERMINATED"]
    assert record["name"] == name
    # REST runtime.ports maps 8188/http to the host port the URL uses
    rest = httpx.get(f"{sandbox.rest_url}/pods/{record['id']}", headers={"Authorization": f"Bearer {sandbox.api_key}"})
    (mapping,) = [p for p in rest.json()["runtime"]["ports"] if p["type"] == "http"]
    assert mapping == {"private": 8188, "public": int(url.group(2)), "type": "http", "ip": "127.0.0.1"}

    # both adapters read the mapping into Pod.http_ports; the cloud's template turns it into the URL
    from pistachio_infra.endpoints import RUNPOD_HTTP_URL, resolve_cloud
    from pistachio_infra.runpod import connect

    cloud = resolve_cloud()
    for adapter in ("rest", "graphql"):
        pod = connect(cloud, adapter).get_pod(record["id"])
        assert pod.http_ports == {8188: int(url.group(2))}, adapter
        assert cloud.http_url(pod.id, 8188, pod.http_ports) == url.group(1)
    runpod = replace(cloud, http_url_template=RUNPOD_HTTP_URL)
    assert runpod.http_url("abc123", 8188, {}) == "https://abc123-8188.proxy.runpod.net"

    base = url.group(1)
    stats = httpx.get(f"{base}/system_stats").json()
    assert stats["system"]["comfyui_version"].startswith("0.35.0") and stats["import_failures"] == {}
    assert "--port" in stats["system"]["argv"] and "8188" in stats["system"]["argv"]
    assert "StandinSampler" in httpx.get(f"{base}/object_info").json()
    assert set(httpx.get(f"{base}/models/loras").json()) == set(loras)

    comfy = Path(record["workspace"]) / "ComfyUI"
    head = (comfy / ".git" / "HEAD").read_text().strip()
    assert head == sandbox.repos["ComfyUI"].commit  # the pinned commit (detached)
    assert model_files(comfy / "models") == {
        "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors",
        "vae/wan_2.1_vae.safetensors",
        *(f"loras/{n}" for n in loras),
    }
    for file, data in loras.items():
        assert sha256((comfy / "models" / "loras" / file).read_bytes()) == sha256(data)
    assert (comfy / "custom_nodes" / "pistachio-standin-pack" / "__init__.py").is_file()

    down = cli("down", name)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [p for p in sandbox_admin.pods() if p["status"] != "TERMINATED"] == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/system_stats", timeout=2)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"nodes": [{"id": 1, "type": "KSampler"', "wan_lora.json"),  # broken JSON: where it broke
        (json.dumps({"nodes": [{"id": 1, "type": "NoPackHasThisNode"}], "links": []}), "NoPackHasThisNode"),
    ],
    ids=["broken-json", "unresolvable-node"],
)
def test_bad_workflow_is_refused_before_any_pod(sandbox, sandbox_admin, fast, tmp_path, content, expected):
    wf = tmp_path / "wan_lora.json"
    wf.write_text(content)
    up = cli("up", "--gpu", "4090", "--role", "comfyui", "--workflow", str(wf), "--no-loras",
             env={"PISTACHIO_COMFY_DB": "offline"})
    assert up.returncode != 0
    assert up.stderr.startswith("error: ") and expected in up.stderr and "Traceback" not in up.stderr
    assert sandbox_admin.pods() == []


def test_role_options_are_checked_before_any_pod(sandbox, sandbox_admin, tmp_path):
    wf = tmp_path / "w.json"
    wf.write_text(json.dumps({"nodes": [], "links": []}))
    train_with_workflow = cli("up", "--gpu", "4090", "--workflow", str(wf))
    assert train_with_workflow.returncode != 0 and "--role comfyui" in train_with_workflow.stderr
    comfy_with_model = cli("up", "--gpu", "4090", "--role", "comfyui", "--model", "wan21-t2v-14b")
    assert comfy_with_model.returncode != 0 and "--model" in comfy_with_model.stderr
    assert sandbox_admin.pods() == []


def test_failed_install_on_the_pod_terminates_it(sandbox, sandbox_admin, static_server, fast, tmp_path):
    """The pack resolves (so the pre-check passes) but its repo cannot be cloned on the pod: `up` fails and tears
    the pod down, as every pod command does."""
    missing = (tmp_path / "no-such-pack").as_uri()
    db = manager_db(static_server, {missing: (["GhostSampler"], "Ghost")})
    wf = workflow(tmp_path / "ghost.json", [{"type": "GhostSampler"}])
    up = cli("up", "--gpu", "4090", "--role", "comfyui", "--workflow", wf, "--no-loras",
             env={"PISTACHIO_COMFY_DB_URL": f"{db.url}/db"})
    assert up.returncode != 0, up.stdout
    assert "error: installing" in up.stderr and "no-such-pack" in up.stderr
    assert "terminated" in up.stdout
    assert [p for p in sandbox_admin.pods() if p["status"] != "TERMINATED"] == []


def test_watchdog_ends_a_comfyui_pod_at_max_runtime(sandbox, sandbox_admin, fast, tmp_path):
    """ComfyUI runs as a job (so the idle rule waits), but the maximum runtime still ends the pod."""
    import time

    up = cli("up", "--gpu", "4090", "--role", "comfyui", "--no-loras", "--max-hours", "0.006")  # 21.6 s
    assert up.returncode == 0, up.stdout + up.stderr
    url = re.search(r"ComfyUI\s+(http://\S+)", up.stdout).group(1)
    assert httpx.get(f"{url}/queue").json() == {"queue_running": [], "queue_pending": []}
    deadline = time.monotonic() + 60
    while [p for p in sandbox_admin.pods() if p["status"] != "TERMINATED"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [p for p in sandbox_admin.pods() if p["status"] != "TERMINATED"] == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/system_stats", timeout=2)
