"""The stand-in ComfyUI app (ComfyUI.git at its pinned commit): ComfyUI's flags, custom node packs imported like
ComfyUI does (a broken one reported, *.disabled skipped), /system_stats, /object_info, /queue, /models, and the
sandbox's port mapping (PISTACHIO_HTTP_PORT_<port>)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pistachio_infra.sandbox.standins import build_repos


@pytest.fixture(scope="module")
def comfy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("comfy")
    pins = build_repos(root / "git")
    dest = root / "ComfyUI"
    subprocess.run(["git", "clone", "--quiet", pins["ComfyUI"].url, str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", pins["ComfyUI"].commit], check=True)
    packs = dest / "custom_nodes"
    (packs / "good-pack").mkdir()
    (packs / "good-pack" / "__init__.py").write_text('NODE_CLASS_MAPPINGS = {"GoodNode": object}\n')
    (packs / "broken-pack").mkdir()
    (packs / "broken-pack" / "__init__.py").write_text("import no_such_module\n")
    (packs / "off-pack.disabled").mkdir()
    (packs / "off-pack.disabled" / "__init__.py").write_text('NODE_CLASS_MAPPINGS = {"OffNode": object}\n')
    (dest / "models" / "loras" / "pip.safetensors").write_bytes(b"x")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(comfy: Path, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "main.py", *args], cwd=comfy, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_serves_comfyui_routes_on_the_mapped_port(comfy):
    host_port = free_port()
    proc = serve(comfy, ["--listen", "--port", "8188"], {"PISTACHIO_HTTP_PORT_8188": str(host_port)})
    base = f"http://127.0.0.1:{host_port}"
    try:
        wait(f"{base}/system_stats", proc)
        stats = httpx.get(f"{base}/system_stats").json()
        assert stats["system"]["comfyui_version"].startswith("0.35.0")
        assert list(stats["import_failures"]) == ["broken-pack"]
        nodes = httpx.get(f"{base}/object_info").json()
        assert nodes["GoodNode"]["python_module"] == "custom_nodes.good-pack"
        assert "KSampler" in nodes and "OffNode" not in nodes
        assert httpx.get(f"{base}/queue").json() == {"queue_running": [], "queue_pending": []}
        assert "loras" in httpx.get(f"{base}/models").json()
        assert httpx.get(f"{base}/models/loras").json() == ["pip.safetensors"]
        assert httpx.get(f"{base}/models/nope").status_code == 404
    finally:
        proc.terminate()
        proc.wait(10)


def test_binds_the_port_as_given_without_a_mapping(comfy):
    port = free_port()
    proc = serve(comfy, ["--listen", "127.0.0.1", "--port", str(port)], {})
    try:
        wait(f"http://127.0.0.1:{port}/system_stats", proc)
    finally:
        proc.terminate()
        proc.wait(10)


def test_refuses_flags_comfyui_does_not_have(comfy):
    done = subprocess.run([sys.executable, "main.py", "--port", "8188", "--no-such-flag"], cwd=comfy,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unrecognized arguments: --no-such-flag" in done.stderr
