#!/usr/bin/env python3
"""Benchmark the `verify` stage's core in the sandbox: render N stills (+ an optional clip), each with and without a
LoRA, through the stand-in ComfyUI (a local process, like a team ComfyUI), and print the wall time next to what the
plan adds to the estimate (data/verify.toml priors, for the sandbox and for RunPod GPU tiers).

    .venv/bin/python scripts/bench_verify.py [--stills 4] [--clip] [--resolution 512] [--json]

The stand-in draws pictures, so its time is the HTTP round trips (POST /prompt, /history polls, /view) and PNG
encoding: the stage's own overhead. On a GPU the render time dominates (see the tiers printed).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAN = {"diffusion_models": "wan2.1_t2v_14B_fp8_e4m3fn.safetensors",
       "text_encoders": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "vae": "wan_2.1_vae.safetensors"}


def _tensor_file(path: Path, seed: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.random.default_rng(seed).standard_normal((8, 8)).astype("float32")}, str(path))


def main() -> int:
    import httpx

    from pistachio_infra.sandbox.standins import build_repos
    from pistachio_infra.verify.client import ComfyClient
    from pistachio_infra.verify.graph import WanFiles
    from pistachio_infra.verify.plan import render_seconds
    from pistachio_infra.verify.render import plan_samples, render_samples

    parser = argparse.ArgumentParser()
    parser.add_argument("--stills", type=int, default=4)
    parser.add_argument("--clip", action="store_true")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        root = Path(tmp) / "ComfyUI"
        pins = build_repos(Path(tmp) / "git")
        subprocess.run(["git", "clone", "--quiet", pins["ComfyUI"].url, str(root)], check=True)
        subprocess.run(["git", "-C", str(root), "checkout", "--quiet", pins["ComfyUI"].commit], check=True)
        for i, (folder, name) in enumerate(WAN.items()):
            _tensor_file(root / "models" / folder / name, i)
        _tensor_file(root / "models" / "loras" / "bench.safetensors", 99)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "main.py", "--port", str(port)], cwd=root, env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{url}/system_stats", timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            prompts = [f"bench7 sample {i}" for i in range(args.stills)]
            samples = plan_samples(prompts, seed=42, resolution=args.resolution, clip=args.clip)
            with ComfyClient(url) as client:
                result = render_samples(client, WanFiles(*WAN.values()), samples, lora="bench.safetensors",
                                        out_dir=Path(tmp) / "samples")
        finally:
            proc.terminate()
            proc.wait(10)
    clips = 1 if args.clip else 0
    out = {
        "stills": args.stills, "clips": clips, "graphs": 2 * len(samples), "resolution": args.resolution,
        "measured_s": round(result.seconds, 3),
        "per_graph_s": round(result.seconds / (2 * len(samples)), 3),
        "plan_sandbox_s": render_seconds("sandbox", 48, args.stills, clips),
        "plan_runpod_s": {tier: render_seconds("runpod", tier, args.stills, clips) for tier in (24, 48, 80, 141)},
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['graphs']} graphs ({args.stills} stills{' + 1 clip' if clips else ''}, with and without the "
              f"LoRA) at {args.resolution}px: {out['measured_s']:.2f}s ({out['per_graph_s']:.3f}s per graph)")
        print(f"plan (sandbox priors): {out['plan_sandbox_s']}")
        for tier, band in out["plan_runpod_s"].items():
            print(f"plan (RunPod, {tier} GB tier priors): low/expected/high {band} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
