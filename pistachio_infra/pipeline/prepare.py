"""Split and render stages: the deterministic 80/20 split on the pod's copy, and the configs for the class rented."""

from __future__ import annotations

import shlex
from pathlib import Path

from ..config.render import RenderedConfigs, render_job, write_rendered
from ..dataset.scan import split_names
from ..pods.scripts import write_files
from .context import RunContext
from .results import RenderDone, SplitDone


def split(ctx: RunContext) -> SplitDone:
    names = ctx.image_names
    train, held_out = split_names(names, ctx.job.seed, ctx.job.eval_split)
    layout = ctx.job_layout
    q = shlex.quote
    lines = ["set -e"]
    for folder, chosen in ((layout.train_dir, train), (layout.eval_dir, held_out)):
        files = [n for name in chosen for n in (name, f"{Path(name).stem}.txt")]
        # keep DiffusionPipe's cache/ (it checks fingerprints itself); replace the top-level files
        lines += [f"mkdir -p -- {q(str(folder))}", f"find {q(str(folder))} -maxdepth 1 -type f -delete",
                  f"cd -- {q(str(layout.images_dir))}",
                  f"cp -f -- {' '.join(q(f) for f in files)} {q(str(folder))}/"]
    ctx.remote.run("\n".join(lines), timeout=600)
    ctx.say(f"split: {len(train)} train / {len(held_out)} eval images (seed {ctx.job.seed})")
    return SplitDone(train=tuple(train), eval=tuple(held_out))


def rendered_for(ctx: RunContext, train_images: int | None = None) -> RenderedConfigs:
    """The job's configs for the class actually rented, with paths of this pod's workspace; the bucket plan
    uses the sizes of the images the split puts on the train side."""
    sizes = train_images if train_images is not None else ctx.dataset.sizes(
        split_names(ctx.image_names, ctx.job.seed, ctx.job.eval_split)[0])
    return render_job(ctx.job, ctx.gpu_class, ctx.layout, train_images=sizes,
                      run_label=ctx.run_folder.name)


def render(ctx: RunContext) -> RenderDone:
    rendered = rendered_for(ctx)
    files = {str(ctx.job_layout.config_dir / name): text for name, text in rendered.files.items()}
    write_files(ctx.remote, files)
    write_rendered(rendered, ctx.work_dir / "configs")
    cadence = rendered.cadence
    assert cadence is not None
    ctx.say(f"configs for {rendered.gpu_class}: ~{cadence.estimated_steps} steps, eval + save every "
            f"{cadence.every} ({cadence.basis})")
    return RenderDone(gpu_class=rendered.gpu_class, steps=cadence.estimated_steps, every=cadence.every)
