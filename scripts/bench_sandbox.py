#!/usr/bin/env python3
"""Benchmark the local sandbox: how long it takes to start, and how long a pod takes to be usable.

    .venv/bin/python scripts/bench_sandbox.py [--runs 5] [--json]

- start (fresh): `control.start()` on an empty home until it answers (includes building the stand-in git repos).
- start (restart): `control.start()` again on the same home after `stop()` (repos already built).
- pod ready: REST `POST /v2/pods` until `GET /v2/pods/{id}` says RUNNING with `ssh.direct` set and the port sends
  an SSH banner (measured once the pod host is set up, i.e. the steady state).
Targets (default scenario): start <= 2 s, pod ready <= 3 s. Medians over `--runs`; the machine's load average is
printed with them, since these are wall-clock numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pistachio_infra.sandbox import control

TARGETS = {"start_fresh_s": 2.0, "start_restart_s": 2.0, "pod_ready_s": 3.0}


def ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(1)
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def pod_ready_time(info: control.SandboxInfo, n: int) -> float:
    import httpx

    headers = {"Authorization": f"Bearer {info.api_key}"}
    body = {"name": f"bench-{n}", "image": "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
            "gpu": {"id": "NVIDIA GeForce RTX 4090"}, "ports": ["22/tcp"]}
    with httpx.Client(base_url=info.rest_url, headers=headers, timeout=30) as client:
        started = time.perf_counter()
        pod = client.post("/pods", json=body).json()
        while True:
            now = client.get(f"/pods/{pod['id']}").json()
            direct = now["ssh"]["direct"]
            if now["status"] == "RUNNING" and direct and ssh_banner(direct["port"]):
                elapsed = time.perf_counter() - started
                break
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"pod {pod['id']} not ready after 60 s: {now['status']}")
            time.sleep(0.02)
        client.delete(f"/pods/{pod['id']}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"start_fresh_s": [], "start_restart_s": [], "pod_ready_s": []}
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        os.environ.setdefault("PISTACHIO_SANDBOX_IMAGE_CACHE", str(Path(tmp) / "image-cache"))
        # warm-up: builds the pod image cache once, so the runs below measure the steady state
        home = Path(tmp) / "warmup"
        control.Admin(control.start(home)).wait_host_ready(120)
        control.stop(home)
        for run in range(args.runs):
            home = Path(tmp) / f"run-{run}"
            t = time.perf_counter()
            info = control.start(home)
            results["start_fresh_s"].append(time.perf_counter() - t)
            control.Admin(info).wait_host_ready(60)
            results["pod_ready_s"].append(pod_ready_time(info, run))
            control.stop(home)
            t = time.perf_counter()
            info = control.start(home)
            results["start_restart_s"].append(time.perf_counter() - t)
            control.stop(home)

    load = os.getloadavg()
    summary = {
        name: {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
               "max": round(max(values), 3), "target": TARGETS[name]}
        for name, values in results.items()
    }
    summary["machine"] = {"cpus": os.cpu_count(), "loadavg_1m": round(load[0], 2), "runs": args.runs}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"sandbox benchmark: {args.runs} runs, {os.cpu_count()} CPUs, load average {load[0]:.2f}")
        for name in results:
            s = summary[name]
            verdict = "ok" if s["median"] <= s["target"] else "OVER TARGET"
            print(f"  {name:<16} median {s['median']:.2f} s  (min {s['min']:.2f}, max {s['max']:.2f}; "
                  f"target <= {s['target']:.1f} s) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
