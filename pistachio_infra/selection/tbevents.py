"""Scalars from a DiffusionPipe run directory's TensorBoard event files, read with tensorboard's EventAccumulator.

DiffusionPipe's SummaryWriter writes `events.out.tfevents.*` directly in the run directory; a resumed run adds a
new file there and logs some steps again. Each tag is read from every file and deduplicated by step, the latest
write winning (the resumed run's value replaces the one logged before the crash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

EVENT_GLOB = "events.out.tfevents.*"
TRAIN_LOSS = "train/loss"
EPOCH_LOSS = "train/epoch_loss"


@dataclass(frozen=True)
class Point:
    step: int
    value: float
    wall_time: float


@dataclass
class RunScalars:
    """Every scalar tag of one run: tag -> points sorted by step (one point per step)."""

    run_dir: Path
    tags: dict[str, list[Point]] = field(default_factory=dict)

    def series(self, tag: str) -> list[Point]:
        return self.tags.get(tag, [])

    def eval_names(self) -> list[str]:
        """Names of the eval datasets: tags `{name}/loss` other than train/…."""
        return sorted(
            tag.removesuffix("/loss")
            for tag in self.tags
            if tag.endswith("/loss") and tag.count("/") == 1 and not tag.startswith("train/")
        )


def event_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob(EVENT_GLOB) if p.is_file())


def _check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory",
                          "pass a DiffusionPipe run directory (output_dir/<timestamp>)")
    if event_files(run_dir):
        return
    nested = sorted(p.parent for p in run_dir.glob(f"*/{EVENT_GLOB}"))
    if nested:
        raise ConfigError(
            f"{run_dir} holds run directories, not a run ({len(set(nested))} found)",
            f"pass one of them, e.g. {nested[-1]}",
        )
    raise ConfigError(
        f"no TensorBoard event files ({EVENT_GLOB}) in {run_dir}",
        "pass the DiffusionPipe run directory itself (output_dir/<timestamp>), with its event files downloaded",
    )


def read_scalars(run_dir: Path) -> RunScalars:
    """Read every scalar of every event file directly in `run_dir` (sub-directories are not read)."""
    run_dir = Path(run_dir)
    _check_run_dir(run_dir)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    latest: dict[str, dict[int, Point]] = {}
    for path in event_files(run_dir):
        # one accumulator per file: duplicates across files are resolved below by wall time; size 0 = keep all
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0}, purge_orphaned_data=False)
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            for ev in acc.Scalars(tag):
                _keep(latest, tag, Point(int(ev.step), float(ev.value), float(ev.wall_time)))
        for tag in tags.get("tensors", []):  # new-style summaries (SummaryWriter(..., new_style=True))
            for ev in acc.Tensors(tag):
                value = _scalar_tensor(ev.tensor_proto)
                if value is not None:
                    _keep(latest, tag, Point(int(ev.step), value, float(ev.wall_time)))
    return RunScalars(run_dir, {tag: [by_step[s] for s in sorted(by_step)] for tag, by_step in latest.items()})


def _keep(latest: dict[str, dict[int, Point]], tag: str, point: Point) -> None:
    seen = latest.setdefault(tag, {}).get(point.step)
    if seen is None or point.wall_time >= seen.wall_time:
        latest[tag][point.step] = point


def _scalar_tensor(proto) -> float | None:
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(proto)
    if array.size != 1 or array.dtype.kind not in "fiu":
        return None
    return float(array.reshape(()))
