#!/usr/bin/env python3
"""Wall time of planning a campaign of 100 and 300 jobs (each with its own generated 16-image dataset; every GPU
class in 4 data centers, concurrency 4, with and without a deadline), each as a ratio to a fixed pure-Python
reference workload timed in this same process, so the numbers compare across machines.

    uv run python scripts/bench_plan.py [--jobs 100 300] [--images 16]

The time is `build_plan` end to end: reading every job's dataset, sizing it, and the search. Offers come from an
in-process list of GPU types (no sandbox, no network). Target: 300 jobs in a few seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

DCS = ("US-TX-3", "EU-RO-1", "CA-MTL-1", "EU-SE-1")


def reference_s() -> float:
    """Median time of a fixed CPU-bound workload (sorting 200k floats), the unit of the ratios printed."""
    rng = random.Random(0)
    data = [rng.random() for _ in range(200_000)]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        sorted(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Offers:
    """The one RunPodApi call the planner makes: every class at its hint price, stock in four data centers."""

    def __init__(self) -> None:
        from pistachio_infra.catalog import gpu_classes
        from pistachio_infra.runpod.port import DataCenterStock, GpuType, Stock

        levels = (Stock.HIGH, Stock.MEDIUM, Stock.LOW, Stock.MEDIUM)
        self.types = [GpuType(id=c.gpu_type_id, name=c.display_name, memory_gb=c.vram_gb,
                              secure_price=c.price_hint_usd_hr, stock=Stock.HIGH,
                              data_centers=[DataCenterStock(data_center_id=dc, stock=levels[i % 4])
                                            for i, dc in enumerate(DCS)])
                      for c in gpu_classes().values()]

    def list_gpu_types(self) -> list:
        return self.types


def write_campaign(root: Path, jobs: int, images: int, deadline_hours: float | None) -> Path:
    import tomlkit

    from pistachio_infra.dataset.demo import generate_dataset

    doc: dict = {"campaign": {"name": "bench", "budget_usd": 100_000.0, "gpu": "auto", "max_concurrent": 4,
                              "volume": False},
                 "project": {"name": "bench"}, "jobs": {}}
    if deadline_hours:
        doc["campaign"]["deadline_hours"] = deadline_hours
    for i in range(jobs):
        folder = root / "data" / f"c{i}"
        if not folder.is_dir():
            generate_dataset(folder, images, seed=1000 + i)
        doc["jobs"][f"c{i}"] = {"character": f"C {i}", "trigger": f"c{i}x", "dataset": f"data/c{i}",
                                "epochs": 10 + (i % 7) * 10, "checkpoints": 2}
    path = root / f"campaign-{jobs}-{deadline_hours}.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    from pistachio_infra.campaign.planning import build_plan
    from pistachio_infra.campaign.spec import load_campaign

    api = Offers()
    print(f"reference workload (sort 200k floats): {reference_s() * 1000:.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["PISTACHIO_HOME"] = str(root / "home")  # a fresh dataset-size cache, removed afterwards
        for n in args.jobs:
            for deadline, when in ((None, "first"), (None, "again"), (24.0 * n / 100, "again")):
                # "first": the datasets were never read (cold cache); "again": a second plan of the same folders
                path = write_campaign(root, n, args.images, deadline)
                campaign = load_campaign(path)
                unit = reference_s()  # measured next to each plan: a loaded machine slows both alike
                start = time.perf_counter()
                ctx = build_plan(campaign, api, "runpod")
                took = time.perf_counter() - start
                p = ctx.plan
                print(f"{n:4d} jobs, deadline {f'{deadline:.0f} h' if deadline else '-':>5}, {when:5}: plan "
                      f"{took:6.2f} s = {took / unit:6.1f}x reference; {len(p.assignments)} planned, "
                      f"${p.usd[1]:.2f}, {p.makespan_s / 3600:.1f} h wall, exact={p.exact}, "
                      f"refusal={p.refusal.constraint if p.refusal else None}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
