"""Predicted duration and cost of one job on one GPU class:

    provision + bootstrap (cold, or warm from the network volume's model cache) + upload + captioning
    + training (steps × seconds/step of the class) + harvest

cost = live price × duration (+ the network volume's $/GB-month share while the job uses it). Every part is a
[low, expected, high] band from data/step_times.toml, refined by the finished runs in the state store.
"""

from __future__ import annotations

import math
import statistics
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError

Band = tuple[float, float, float]  # low, expected, high
MONTH_S = 30 * 86400
PRIOR_WEIGHT = 2.0  # the table counts as this many observed runs when blending with our own


def _band(raw: Any, where: str) -> Band:
    if not (isinstance(raw, list) and len(raw) == 3 and all(isinstance(v, int | float) for v in raw)):
        raise ConfigError(f"step_times.toml: {where} must be [low, expected, high]", "reinstall pistachio-infra")
    low, mid, high = (float(v) for v in raw)
    if not 0 <= low <= mid <= high:
        raise ConfigError(f"step_times.toml: {where} must satisfy 0 ≤ low ≤ expected ≤ high",
                          "reinstall pistachio-infra")
    return low, mid, high


@dataclass(frozen=True)
class Timings:
    """One cloud's timing model."""

    cloud: str
    provision_s: Band
    bootstrap_cold_s: Band
    bootstrap_warm_s: Band
    upload_mb_per_s: Band
    caption_load_s: Band
    train_fixed_s: Band
    harvest_s: Band
    caption_s_per_image: dict[int, Band]
    s_per_step: dict[str, Band]
    volume_usd_per_gb_month: float
    observed_runs: dict[str, int] = field(default_factory=dict)  # GPU class -> finished runs blended in

    def step_band(self, gpu_class: str) -> Band:
        try:
            return self.s_per_step[gpu_class]
        except KeyError:
            raise ConfigError(f"step_times.toml has no s_per_step for GPU class {gpu_class!r} ({self.cloud})",
                              "add it to pistachio_infra/data/step_times.toml") from None

    def caption_band(self, tier: int) -> Band:
        known = sorted(self.caption_s_per_image)
        nearest = min(known, key=lambda t: abs(t - tier))
        return self.caption_s_per_image[nearest]


def load_timings(cloud: str) -> Timings:
    """The table for `cloud` ('runpod' or 'sandbox') from data/step_times.toml."""
    from ..paths import data_dir

    with (data_dir() / "step_times.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    if cloud not in raw:
        raise ConfigError(f"step_times.toml has no [{cloud}] table", "reinstall pistachio-infra")
    table = raw[cloud]
    scalars = ("provision_s", "bootstrap_cold_s", "bootstrap_warm_s", "upload_mb_per_s", "caption_load_s",
               "train_fixed_s", "harvest_s")
    return Timings(
        cloud=cloud,
        **{k: _band(table.get(k), f"{cloud}.{k}") for k in scalars},
        caption_s_per_image={int(t): _band(v, f"{cloud}.caption_s_per_image.{t}")
                             for t, v in table["caption_s_per_image"].items()},
        s_per_step={c: _band(v, f"{cloud}.s_per_step.{c}") for c, v in table["s_per_step"].items()},
        volume_usd_per_gb_month=float(raw.get("volume", {}).get("usd_per_gb_month", 0.07)),
    )


# --- refinement from our own runs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Observation:
    gpu_class: str
    seconds_per_step: float


def observations(store: Any, cloud: str) -> list[Observation]:
    """Seconds per training step of every finished run on `cloud` (train stage wall time minus the fixed part
    is not separable, so the whole train stage over its steps: slightly pessimistic for short runs)."""
    out = []
    for job in store.jobs():
        if job["cloud"] != cloud or job["status"] != "done":
            continue
        stages = {s.stage: s for s in store.stages(job["id"])}
        train, prov = stages.get("train"), stages.get("provision")
        if train is None or prov is None or train.finished_at is None or not train.result:
            continue
        steps = int(train.result.get("steps") or 0) - int(train.result.get("resumed_at") or 0)
        gpu = (prov.result or {}).get("gpu_class")
        if steps <= 0 or not gpu:
            continue
        out.append(Observation(gpu, (train.finished_at - train.started_at) / steps))
    return out


def refine(timings: Timings, obs: Iterable[Observation]) -> Timings:
    """Blend observed seconds/step into the table: the expected value moves towards the observed median (the table
    weighs as PRIOR_WEIGHT runs) and the band narrows around it as runs accumulate, never excluding what was seen."""
    by_class: dict[str, list[float]] = {}
    for o in obs:
        by_class.setdefault(o.gpu_class, []).append(o.seconds_per_step)
    steps = dict(timings.s_per_step)
    counts = dict(timings.observed_runs)
    for cls, values in by_class.items():
        if cls not in steps:
            continue
        low, mid, high = steps[cls]
        n = len(values)
        new_mid = (PRIOR_WEIGHT * mid + n * statistics.median(values)) / (PRIOR_WEIGHT + n)
        shrink = 1 / math.sqrt(1 + n)
        new_low = min(new_mid - (mid - low) * shrink, min(values))
        new_high = max(new_mid + (high - mid) * shrink, max(values))
        steps[cls] = (max(0.0, new_low), new_mid, new_high)
        counts[cls] = counts.get(cls, 0) + n
    return replace(timings, s_per_step=steps, observed_runs=counts)


def timings_for(cloud: str, store: Any | None = None) -> Timings:
    base = load_timings(cloud)
    return refine(base, observations(store, cloud)) if store is not None else base


# --- what a job needs ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobDemand:
    name: str
    steps: int
    images: int
    to_caption: int
    upload_bytes: int
    pixel_factor: float  # step time relative to 512 px
    classes: tuple[str, ...]  # allowed GPU classes for this job
    data_centers: tuple[str, ...] = ()  # allowed data centers; empty = any
    budget_usd: float | None = None  # the job's own cap (job.budget_usd)


def demand_for(job: Any, classes: tuple[str, ...], data_centers: tuple[str, ...] = (),
               size: Any | None = None) -> JobDemand:
    """Size the job from its dataset (free, local; `size`: a `sizing.DatasetSize` already read): steps from the
    checkpoint cadence, images to caption."""
    from ..catalog import EFFECTIVE_BATCH
    from ..config.render import cadence_for

    if size is None:
        from .sizing import dataset_sizes

        size = dataset_sizes([job])[job.name]
    steps = cadence_for(job, EFFECTIVE_BATCH, train_images=size.train).estimated_steps
    pixel = sum((r / 512) ** 2 for r in job.resolutions) / len(job.resolutions)
    allowed = tuple(c for c in classes if job.gpu_auto or c in job.gpu or "auto" in job.gpu)
    if not allowed:
        raise ConfigError(f"job {job.name!r} allows GPU classes {', '.join(job.gpu)}, none of which the campaign "
                          f"allows ({', '.join(classes)})", "widen the campaign's gpu list or the job's")
    dcs = tuple(d for d in data_centers if not job.data_centers or d in job.data_centers) if data_centers \
        else tuple(job.data_centers)
    return JobDemand(name=job.name, steps=steps, images=size.usable, to_caption=size.to_caption,
                     upload_bytes=size.upload_bytes, pixel_factor=pixel, classes=allowed,
                     data_centers=dcs, budget_usd=job.budget_usd)


# --- the estimate -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    gpu_class: str
    price_per_hr: float
    warm: bool
    seconds: Band
    usd: Band
    parts: dict[str, float]  # expected seconds per part
    volume_usd: float = 0.0  # expected volume share inside usd

    @property
    def expected_usd(self) -> float:
        return self.usd[1]

    @property
    def expected_s(self) -> float:
        return self.seconds[1]


def estimate(demand: JobDemand, gpu_class: str, price_per_hr: float, timings: Timings, *, warm: bool = False,
             volume_gb: float = 0.0) -> Estimate:
    """Duration and cost of `demand` on `gpu_class` at `price_per_hr`; `warm`: the model cache is on a network
    volume of `volume_gb` GB whose $/GB-month accrues while the job runs."""
    from ..catalog import gpu_class as lookup

    tier = lookup(gpu_class).tier
    step = timings.step_band(gpu_class)
    cap = timings.caption_band(tier)
    mb = demand.upload_bytes / 1e6

    def part(i: int) -> dict[str, float]:
        rate = timings.upload_mb_per_s[2 - i]  # the slowest rate gives the longest upload
        return {
            "provision": timings.provision_s[i],
            "bootstrap": (timings.bootstrap_warm_s if warm else timings.bootstrap_cold_s)[i],
            "upload": mb / rate if rate > 0 else 0.0,
            "caption": (timings.caption_load_s[i] + demand.to_caption * cap[i]) if demand.to_caption else 0.0,
            "train": timings.train_fixed_s[i] + demand.steps * step[i] * demand.pixel_factor,
            "harvest": timings.harvest_s[i],
        }

    low, mid, high = (part(i) for i in range(3))
    seconds = (sum(low.values()), sum(mid.values()), sum(high.values()))
    vol_per_s = volume_gb * timings.volume_usd_per_gb_month / MONTH_S if warm else 0.0
    usd = tuple(s * (price_per_hr / 3600 + vol_per_s) for s in seconds)
    return Estimate(gpu_class=gpu_class, price_per_hr=price_per_hr, warm=warm, seconds=seconds,
                    usd=usd,  # type: ignore[arg-type]
                    parts={k: round(v, 1) for k, v in mid.items()}, volume_usd=seconds[1] * vol_per_s)
