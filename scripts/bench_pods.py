#!/usr/bin/env python3
"""Pod lifecycle timings in the sandbox (an isolated one, started and stopped here).

  - `up` wall time, split into provision (create → SSH endpoint listed), SSH wait (endpoint → sshd answers),
    watchdog install and bootstrap (checkouts, deps, base-model files into a fresh workspace);
  - teardown: from `down` (terminate requested) to the API reporting the pod TERMINATED / no longer listed.

Median of --runs runs. Usage: .venv/bin/python scripts/bench_pods.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="pistachio-bench-pods-"))
    os.environ.update(PISTACHIO_HOME=str(home), PISTACHIO_SANDBOX="1", PISTACHIO_POD_POLL_S="0.2")

    from pistachio_infra.endpoints import resolve_cloud
    from pistachio_infra.pods import PodLifecycle, PodSpec
    from pistachio_infra.pods.session import pod_session
    from pistachio_infra.pods.sshkeys import public_key
    from pistachio_infra.pods.watchdog import WatchdogPolicy
    from pistachio_infra.runpod import connect
    from pistachio_infra.sandbox import control
    from pistachio_infra.state import Store

    info = control.start(home / "sandbox")
    admin = control.Admin(info)
    try:
        cloud = resolve_cloud()
        api = connect(cloud)
        store = Store()
        spec = PodSpec(purpose="bench", label="pods", gpu_classes=("a6000", "a40"), public_key=public_key())
        policy = WatchdogPolicy(max_runtime_s=1800, idle_s=300)
        ups: list[dict[str, float]] = []
        downs: list[float] = []
        for i in range(args.runs):
            t0 = time.monotonic()
            with pod_session(spec, policy=policy, cloud=cloud, api=api, store=store, keep=True) as session:
                row = {k: session.timings[k] for k in ("provision_s", "ssh_wait_s", "watchdog_s", "bootstrap_s")}
                row["up_total_s"] = time.monotonic() - t0
                name = session.name
            ups.append(row)
            lifecycle = PodLifecycle(api, store, cloud)
            t1 = time.monotonic()
            lifecycle.terminate(name, "bench down")
            downs.append(time.monotonic() - t1)
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()) + f", down {downs[-1]:.2f}s",
                  file=sys.stderr)
        assert not [p for p in admin.pods() if p["status"] != "TERMINATED"], "a pod is still billing"
        result = {k: round(statistics.median(r[k] for r in ups), 3) for k in ups[0]}
        result["down_to_terminated_s"] = round(statistics.median(downs), 3)
        result["runs"] = args.runs
        store.close()
    finally:
        control.stop(home / "sandbox")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"sandbox, median of {args.runs} runs")
        print(f"  up total            {result['up_total_s']:.2f}s")
        print(f"    provision         {result['provision_s']:.2f}s  (create → SSH endpoint listed)")
        print(f"    ssh wait          {result['ssh_wait_s']:.2f}s  (endpoint → sshd banner)")
        print(f"    watchdog install  {result['watchdog_s']:.2f}s  (first SSH connection included)")
        print(f"    bootstrap         {result['bootstrap_s']:.2f}s  (fresh workspace: clones, deps, model files)")
        print(f"  down → TERMINATED   {result['down_to_terminated_s']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
