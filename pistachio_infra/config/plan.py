"""A job's bucket plan before any pod: DiffusionPipe's size buckets for the train images on one GPU tier's global
batch (dataset/buckets.py), the `num_repeats` that keeps every bucket, and the steps per epoch that the cadence,
the cost estimate and `configs for …: ~N steps` all use — the count the trainer runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..dataset.buckets import BucketPlan, BucketSettings, plan_buckets
from ..errors import ConfigError, DatasetError
from .project import Job

MAX_AUTO_REPEATS = 4  # more would multiply every epoch's cost to rescue a few odd-shaped images: refuse instead
REFERENCE_SIDE = 1024  # `train_images` given as a count: that many square images

TrainImages = int | Mapping[str, tuple[int, int]]


def train_sizes(job: Job, train_images: TrainImages | None = None) -> dict[str, tuple[int, int]]:
    """name -> (width, height) of the train side of the split. An int is that many square images; None reads the
    job's dataset folder (image headers only)."""
    if isinstance(train_images, int):
        return {f"image{i:04d}": (REFERENCE_SIDE, REFERENCE_SIDE) for i in range(train_images)}
    if train_images is not None:
        return dict(train_images)
    from PIL import Image

    from ..dataset.scan import image_files, split_names

    if not job.dataset.is_dir():
        raise ConfigError(
            f"cannot size the checkpoint cadence: dataset folder {job.dataset} not found",
            "create it, set max_steps or save_every_n_steps in the job, or pass the train image count",
        )
    paths = {p.name: p for p in image_files(job.dataset)}
    if len(paths) < 2:
        raise ConfigError(f"{job.dataset} holds {len(paths)} image(s)", "add images (at least 5)")
    train, _ = split_names(list(paths), job.seed, job.eval_split)
    sizes = {}
    for name in train:
        with Image.open(paths[name]) as im:
            sizes[name] = im.size
    return sizes


def choose_plan(job: Job, sizes: Mapping[str, tuple[int, int]], batch: int, gpu: str,
                settings_for: Callable[[int], BucketSettings]) -> BucketPlan:
    """The job's plan: its own `num_repeats`, or (unset) the least up to MAX_AUTO_REPEATS with no size bucket
    dropped whole. Refuses (DatasetError, one line naming the images) when images would never be trained."""
    if job.num_repeats is not None:
        plan = plan_buckets(sizes, settings_for(job.num_repeats), batch)
    else:
        for repeats in range(1, MAX_AUTO_REPEATS + 1):
            plan = plan_buckets(sizes, settings_for(repeats), batch)
            if not plan.dropped_images:
                break
    lost = plan.dropped_images
    if lost:
        raise DatasetError(_refusal(job, plan, lost, gpu, sizes), _fix(job, sizes, batch, settings_for))
    return plan


def _refusal(job: Job, plan: BucketPlan, lost: list[str], gpu: str, sizes: Mapping[str, tuple[int, int]]) -> str:
    shapes = ", ".join(f"{n} ({sizes[n][0]}x{sizes[n][1]})" for n in lost)
    what = ("DiffusionPipe would find the dataset empty ('Processed dataset was empty')" if plan.empty else
            f"DiffusionPipe would drop {len(lost)} of {plan.images} train image(s) whole")
    return (f"job {job.name!r} on {gpu}: {what}: each aspect-ratio bucket needs at least {plan.global_batch} "
            f"examples per epoch (the global batch) at num_repeats {plan.num_repeats}, and these fall short: {shapes}")


def _fix(job: Job, sizes: Mapping[str, tuple[int, int]], batch: int,
         settings_for: Callable[[int], BucketSettings]) -> str:
    repeats = next(r for r in range(1, batch + 1) if not plan_buckets(sizes, settings_for(r), batch).dropped_images)
    return (f"crop those images to the shape of the others or remove them, or add images of their shape, or set "
            f"num_repeats = {repeats} in job {job.name!r} (each image {repeats}× per epoch); nothing was rented")
