#!/usr/bin/env python3
"""Benchmark the train pipeline in the sandbox: how much pod time a job bills beyond the training itself, and how
fast the pod is gone once training is complete.

    .venv/bin/python scripts/bench_train.py [--steps 400] [--seconds-per-step 1.0] [--json]

Setup: a fresh sandbox (default scenario, except the stand-in trainer's step time), a network volume in a data
center with RTX A6000 stock, and a 24-image generated dataset. A first run warms the volume (DiffusionPipe,
joy-caption-batch, model files); the measured run is a second job on the same volume (bootstrap finds everything
cached), captioned and trained from scratch.

- overhead ratio = billed pod-seconds (create → terminated, as the sandbox bills them) / stand-in training seconds
  (first to last TensorBoard event of the run: the trainer's own working time). Target ≤ 1.05. The fixed costs
  (provision, SSH, watchdog, cached bootstrap, upload, captioning, harvest, teardown) are seconds, so the ratio only
  means something for a training of minutes: the default is 400 steps × 1 s (real Wan 14B LoRA runs take hours).
- complete → terminated = pod terminated_at − the last event's wall time (DiffusionPipe prints TRAINING COMPLETE!
  right after closing the event file). Target ≤ 10 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGETS = {"overhead_ratio": 1.05, "complete_to_terminated_s": 10.0}
IMAGES = 24


def _project(root: Path, name: str, epochs: int) -> Path:
    import tomlkit

    from pistachio_infra.dataset.demo import generate_dataset

    if not (root / "images").is_dir():
        generate_dataset(root / "images", IMAGES)
    path = root / "pistachio.toml"
    doc = tomlkit.parse(path.read_text()) if path.exists() else {"project": {"name": "bench"}, "jobs": {}}
    doc["jobs"][name] = {"character": "Pip", "trigger": "pip7", "dataset": "images", "gpu": ["a6000"],
                         "epochs": epochs, "checkpoints": 8}
    path.write_text(tomlkit.dumps(doc))
    return path


def _run(project_path: Path, job: str, volume: tuple[str, str]):  # type: ignore[no-untyped-def]
    from rich.console import Console

    from pistachio_infra.config.project import load_project
    from pistachio_infra.pipeline.driver import TrainRequest, run_training

    project = load_project(project_path)
    request = TrainRequest(job=project.job(job), project=project, base_dir=project_path.parent,
                           network_volume=volume)
    return run_training(request, Console(quiet=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps of the measured run")
    parser.add_argument("--seconds-per-step", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="pistachio-bench-train-"))
    os.environ["PISTACHIO_HOME"] = str(home)
    os.environ["PISTACHIO_SANDBOX"] = "1"
    from pistachio_infra.catalog import gpu_class
    from pistachio_infra.endpoints import resolve_cloud
    from pistachio_infra.runpod import connect
    from pistachio_infra.sandbox import control
    from pistachio_infra.selection.tbevents import event_files
    from pistachio_infra.state import Store

    scenario = home / "scenario.toml"
    scenario.write_text(f"[standin.trainer]\nseconds_per_step = {args.seconds_per_step}\n")
    info = control.start(home / "sandbox", scenario)
    admin = control.Admin(info)
    try:
        cloud = resolve_cloud()
        api = connect(cloud)
        a6000 = next(g for g in api.list_gpu_types() if g.id == gpu_class("a6000").gpu_type_id)
        dc = next(d.data_center_id for d in a6000.data_centers if d.stock.value != "None")
        volume = api.create_volume("bench-models", 200, dc)
        project = home / "project"
        project.mkdir()
        # 19 train images at batch 8 = 3 steps per epoch
        steps_per_epoch = math.ceil(round(IMAGES * 0.8) / 8)
        t0 = time.monotonic()
        _run(_project(project, "warm", 2), "warm", (volume.id, dc))
        warm_s = time.monotonic() - t0
        epochs = max(1, round(args.steps / steps_per_epoch))
        t0 = time.monotonic()
        result = _run(_project(project, "measured", epochs), "measured", (volume.id, dc))
        wall_s = time.monotonic() - t0

        store = Store()
        pods = [p for p in store.pods(job_id=result.job_id) if p.pod_id]
        store.close()
        assert len(pods) == 1, pods
        pod = next(p for p in admin.pods() if p["id"] == pods[0].pod_id)
        billed_s = pod["terminated_at"] - pod["created_at"]
        run_dirs = sorted((home / "work" / f"measured-{result.job_id}" / "run").iterdir())
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        walls = []
        for path in event_files(run_dirs[-1]):
            acc = EventAccumulator(str(path))
            acc.Reload()
            for tag in acc.Tags()["scalars"]:
                walls += [e.wall_time for e in acc.Scalars(tag)]
        train_s = max(walls) - min(walls)
        numbers = {
            "steps": result.step and epochs * steps_per_epoch,
            "seconds_per_step": args.seconds_per_step,
            "warm_run_s": round(warm_s, 1),
            "measured_run_wall_s": round(wall_s, 1),
            "billed_pod_s": round(billed_s, 1),
            "training_s": round(train_s, 1),
            "overhead_ratio": round(billed_s / train_s, 4),
            "complete_to_terminated_s": round(pod["terminated_at"] - max(walls), 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        control.stop(home / "sandbox")
    if args.json:
        print(json.dumps(numbers, indent=2))
    else:
        for key, value in numbers.items():
            target = TARGETS.get(key)
            mark = "" if target is None else (" ✓" if value <= target else " ✗") + f" (target ≤ {target})"
            print(f"{key:28} {value}{mark}")
    return 0 if all(numbers[k] <= v for k, v in TARGETS.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
