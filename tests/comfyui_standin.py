"""The sandbox's stand-in ComfyUI run as a local process (the "local or team ComfyUI" of the verify stage): cloned
from the stand-in ComfyUI.git at its pinned commit, with ComfyUI's own Wan 2.1 files (tiny stand-ins under the real
names) in its model folders. Importable as `comfyui_standin` from any test module."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

WAN = {"diffusion_models": "wan2.1_t2v_14B_fp8_e4m3fn.safetensors",
       "text_encoders": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "vae": "wan_2.1_vae.safetensors"}


def lora_file(path: Path, seed: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_A.weight": rng.standard_normal((4, 16)).astype("float32"),
               "diffusion_model.blocks.0.self_attn.q.lora_B.weight": rng.standard_normal((16, 4)).astype("float32")},
              str(path))
    return path


@dataclass
class StandinComfy:
    root: Path
    url: str
    proc: subprocess.Popen

    @property
    def loras(self) -> Path:
        return self.root / "models" / "loras"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def clone(dest: Path, *, wan: bool = True) -> Path:
    from pistachio_infra.sandbox.standins import build_repos

    pins = build_repos(dest.parent / "git")
    subprocess.run(["git", "clone", "--quiet", pins["ComfyUI"].url, str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", pins["ComfyUI"].commit], check=True)
    if wan:
        for folder, name in WAN.items():
            lora_file(dest / "models" / folder / name, len(name))
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: Path, scenario: Path | None = None) -> StandinComfy:
    port = free_port()
    env = {**os.environ, **({"PISTACHIO_STANDIN_SCENARIO": str(scenario)} if scenario else {})}
    proc = subprocess.Popen([sys.executable, "main.py", "--port", str(port)], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/system_stats", timeout=2).status_code == 200:
                return StandinComfy(root, url, proc)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the stand-in ComfyUI in {root} did not start")
        time.sleep(0.1)
