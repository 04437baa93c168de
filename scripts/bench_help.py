#!/usr/bin/env python3
"""Median wall time of `pistachio-infra --help` over N runs, and its ratio to `python -c pass` (both subprocesses,
measured in this one process). Target: ≤ 0.25 s.

    uv run python scripts/bench_help.py [-n 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.25


def median_wall(argv: list[str], runs: int) -> float:
    subprocess.run(argv, check=True, capture_output=True)  # warm the OS file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=15)
    args = parser.parse_args()
    exe = Path(sys.executable).parent / "pistachio-infra"
    cli = [str(exe)] if exe.exists() else [shutil.which("pistachio-infra") or "pistachio-infra"]
    baseline = median_wall([sys.executable, "-c", "pass"], args.runs)
    help_time = median_wall([*cli, "--help"], args.runs)
    verdict = "ok" if help_time <= TARGET_S else "OVER TARGET"
    print(f"python -c pass          median {baseline * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"pistachio-infra --help  median {help_time * 1000:7.1f} ms  ({args.runs} runs)")
    print(f"ratio {help_time / baseline:.2f}x; target ≤ {TARGET_S * 1000:.0f} ms: {verdict}")
    return 0 if help_time <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
