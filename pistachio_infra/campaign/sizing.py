"""What the planner needs from a job's dataset (usable images, images to caption, bytes to upload, the train split),
read once and remembered: a campaign of hundreds of jobs is planned again and again (`campaign plan`, `run`,
`--replan`) over the same folders, and decoding every image each time was most of the planning time.

The full preflight (`dataset.scan.preflight`: every image decoded) runs the first time a folder is seen, and again
whenever anything in it changes: the cache key is the folder's listing (every entry's name, size and mtime in ns)
with the job's trigger, split seed and fraction and recaption flag. A refused dataset is never remembered, so its
error shows every time. The job's own preflight before its pod is rented still decodes everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CACHE_VERSION = 1


@dataclass(frozen=True)
class DatasetSize:
    usable: int
    to_caption: int
    upload_bytes: int
    train: int


def _cache_path() -> Path:
    from ..paths import state_dir

    return state_dir() / "cache" / "dataset-sizes.json"


def _key(folder: Path, trigger: str, seed: int, eval_split: float, recaption: bool) -> str | None:
    try:
        listing = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder)
                         if not e.name.startswith("."))
        stat = folder.stat()
    except OSError:
        return None
    raw = json.dumps([CACHE_VERSION, str(folder.resolve()), stat.st_mtime_ns, trigger, seed, eval_split, recaption,
                      listing])
    return hashlib.sha256(raw.encode()).hexdigest()


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dataset-sizes-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:
        pass  # a cache that cannot be written only costs time


def _measure(job: Any) -> DatasetSize:
    from ..dataset.scan import preflight

    report = preflight(job.dataset, job.trigger, job.seed, job.eval_split, job.recaption)
    usable = report.usable
    return DatasetSize(usable=len(usable),
                       to_caption=len(usable) if job.recaption else sum(1 for i in usable if not i.caption),
                       upload_bytes=sum(i.size_bytes for i in usable), train=len(report.train))


def dataset_sizes(jobs: list[Any]) -> dict[str, DatasetSize]:
    """job name → its dataset's size, from the cache where the folder is unchanged, else from a full preflight
    (which raises DatasetError for a dataset that cannot be trained on). Folders not in the cache are read in a
    few threads (Pillow decodes and hashlib hashes without the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    path = _cache_path()
    cache = _load(path)
    keys = {job.name: _key(Path(job.dataset), job.trigger, job.seed, job.eval_split, job.recaption) for job in jobs}
    found: dict[str, DatasetSize] = {}
    for job in jobs:
        key = keys[job.name]
        if key and key in cache:
            with contextlib.suppress(TypeError):
                found[job.name] = DatasetSize(**cache[key])
    todo: dict[str | None, Any] = {}  # one job per folder key: jobs sharing a folder (and trigger...) read it once
    for job in jobs:
        if job.name not in found:
            todo.setdefault(keys[job.name] or job.name, job)
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(todo))) as pool:
            measured = dict(zip(todo, pool.map(_measure, todo.values()), strict=True))  # raises the first error
        for job in jobs:
            if job.name not in found:
                found[job.name] = measured[keys[job.name] or job.name]
        cache.update({k: asdict(v) for k, v in measured.items() if k in keys.values()})
        _save(path, cache)
    return {job.name: found[job.name] for job in jobs}
