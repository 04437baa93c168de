"""DiffusionPipe's size buckets for a folder of images, computed before any pod exists.

Read from tdrussell/diffusion-pipe utils/dataset.py at 8f83dbf (our pin in data/sources.toml):
- `DirectoryDataset.__init__`: the aspect-ratio buckets are `[1.0]` without `enable_ar_bucket`, the `ar_buckets`
  list (a `[w, h]` pair counts as w/h) when given, else `np.geomspace(min_ar, max_ar, num_ar_buckets)`; then
  `dedup_and_sort` rounds them to 3 decimals (ROUND_DECIMAL_DIGITS). `frame_buckets` always holds 1.
- `_find_closest_ar_bucket`: an image goes to the bucket with the least |log(w/h) - log(ar)| (np.argmin: the first
  on a tie); images have one frame.
- `ARBucketDataset.cache_latents`: one size bucket per resolution: area = res², w = sqrt(area·ar), h = area / w,
  both rounded to the nearest multiple of the model's `pixels_round_to_multiple` (16 for Wan 2.1, models/base.py).
  A `[w, h]` resolution counts as sqrt(w·h).
- `SizeBucketDataset.__len__`: images × num_repeats.
- `ConcatenatedBatchedDataset.post_init` / `_make_divisible_by`: each size bucket is cut to a multiple of the global
  batch (micro batch × gradient_accumulation_steps × data-parallel world size; the image micro batch for one-frame
  buckets; with per-size batches, the size nearest sqrt(w·h)); a bucket cut to 0 logs "size bucket … is being
  completely dropped because it doesn't have enough images".
- `PipelineDataLoader.__init__`: an empty result raises "Processed dataset was empty…"; train.py: steps per epoch =
  len(dataloader) // accumulation = Σ floor(bucket / global batch).

Which images of a partly cut bucket are left out depends on the `datasets` library's seeded shuffle, so only whole
dropped buckets are named; a cut bucket is reported by count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROUND_DECIMAL_DIGITS = 3
WAN_PIXELS_ROUND_TO = 16  # models/base.py `pixels_round_to_multiple`; Wan 2.1 T2V keeps the default


def dedup_and_sort(values: list[float]) -> list[float]:
    return sorted({round(float(v), ROUND_DECIMAL_DIGITS) for v in values})


def _round_to_multiple(x: float, multiple: int) -> int:
    return int(round(x / multiple) * multiple)


@dataclass(frozen=True)
class BucketSettings:
    """What one [[directory]] of a DiffusionPipe dataset TOML says about bucketing (directory keys over top-level)."""

    resolutions: tuple[float, ...]
    ars: tuple[float, ...]
    num_repeats: int = 1
    round_to: int = WAN_PIXELS_ROUND_TO

    @classmethod
    def from_dataset_config(cls, cfg: Mapping[str, Any], directory: int = 0,
                            round_to: int = WAN_PIXELS_ROUND_TO) -> BucketSettings:
        import numpy as np

        d = dict(cfg.get("directory", [{}])[directory])

        def get(key: str, default: Any = None) -> Any:
            return d.get(key, cfg.get(key, default))

        resolutions = [math.sqrt(r[0] * r[1]) if isinstance(r, list | tuple) else float(r)
                       for r in get("resolutions", [])]
        if not get("enable_ar_bucket", False):
            ars: list[float] = [1.0]
        elif given := get("ar_buckets"):
            ars = [a[0] / a[1] if isinstance(a, list | tuple) else float(a) for a in given]
        else:
            ars = [float(a) for a in np.geomspace(get("min_ar"), get("max_ar"), num=get("num_ar_buckets"))]
        return cls(resolutions=tuple(dedup_and_sort(resolutions)), ars=tuple(dedup_and_sort(ars)),
                   num_repeats=int(get("num_repeats", 1)), round_to=round_to)

    def closest_ar(self, width: int, height: int) -> float:
        log_ar = math.log(width / height)
        diffs = [abs(log_ar - math.log(a)) for a in self.ars]
        return self.ars[diffs.index(min(diffs))]

    def size(self, ar: float, resolution: float) -> tuple[int, int]:
        area = resolution ** 2
        w = math.sqrt(area * ar)
        h = area / w
        return _round_to_multiple(w, self.round_to), _round_to_multiple(h, self.round_to)


def global_batch(train_cfg: Mapping[str, Any], size: tuple[int, int] | None = None, data_parallel: int = 1) -> int:
    """The global batch of a one-frame size bucket, from a DiffusionPipe training TOML (train.py key handling)."""

    def as_dict(value: Any) -> dict[Any, int]:
        return {None: int(value)} if isinstance(value, int) else {x[0]: int(x[1]) for x in value}

    micro = as_dict(train_cfg.get("micro_batch_size_per_gpu", 1))
    image = as_dict(train_cfg.get("image_micro_batch_size_per_gpu", train_cfg.get("micro_batch_size_per_gpu", 1)))
    accum = int(train_cfg.get("gradient_accumulation_steps", 1))
    per_size = image or micro
    if None in per_size or size is None:
        bs = per_size.get(None, next(iter(per_size.values())))
    else:
        target = math.sqrt(size[0] * size[1])
        bs = min(per_size.items(), key=lambda kv: abs(kv[0] - target))[1]  # first on a tie, like upstream's loop
    return bs * accum * data_parallel


@dataclass(frozen=True)
class SizeBucket:
    ar: float
    width: int
    height: int
    images: tuple[str, ...]
    examples: int  # images × num_repeats
    kept: int  # examples cut to a multiple of the global batch
    global_batch: int

    @property
    def steps(self) -> int:
        return self.kept // self.global_batch

    @property
    def dropped(self) -> bool:
        return self.kept == 0

    @property
    def label(self) -> str:
        """DiffusionPipe's name for it: (ar, width, height, frames)."""
        return f"({self.ar}, {self.width}, {self.height}, 1)"


@dataclass(frozen=True)
class BucketPlan:
    global_batch: int
    num_repeats: int
    buckets: tuple[SizeBucket, ...]
    images: int

    @property
    def steps_per_epoch(self) -> int:
        return sum(b.steps for b in self.buckets)

    @property
    def empty(self) -> bool:
        return self.steps_per_epoch == 0

    @property
    def dropped_images(self) -> list[str]:
        """Images never trained: every size bucket holding them is dropped whole."""
        kept = {n for b in self.buckets if not b.dropped for n in b.images}
        return sorted({n for b in self.buckets for n in b.images} - kept)

    @property
    def left_out(self) -> int:
        """Examples per epoch past the last full batch of their bucket (cut, not trained)."""
        return sum(b.examples - b.kept for b in self.buckets)

    def describe(self) -> str:
        ars = sorted({b.ar for b in self.buckets})
        text = (f"{self.images} train image{'s' * (self.images != 1)} in {len(ars)} aspect-ratio "
                f"bucket{'s' * (len(ars) != 1)}"
                + (f" × {self.num_repeats} repeats" if self.num_repeats > 1 else "")
                + f", batch {self.global_batch}")
        if self.left_out:
            text += f", {self.left_out} past the last full batch left out"
        return text


def plan_buckets(sizes: Mapping[str, tuple[int, int]], settings: BucketSettings, batch: int) -> BucketPlan:
    """Size buckets of the images `sizes` (name -> (width, height)) under `settings`, cut to the global `batch`."""
    by_ar: dict[float, list[str]] = {}
    for name in sorted(sizes):
        w, h = sizes[name]
        by_ar.setdefault(settings.closest_ar(w, h), []).append(name)
    buckets = []
    for ar in sorted(by_ar):
        names = tuple(by_ar[ar])
        for res in settings.resolutions:
            w, h = settings.size(ar, res)
            examples = len(names) * settings.num_repeats
            buckets.append(SizeBucket(ar=ar, width=w, height=h, images=names, examples=examples,
                                      kept=examples // batch * batch, global_batch=batch))
    return BucketPlan(global_batch=batch, num_repeats=settings.num_repeats, buckets=tuple(buckets),
                      images=len(sizes))
