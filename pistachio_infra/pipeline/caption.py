"""Upload and caption stages: the dataset goes to the pod's images/ folder, JoyCaption writes the missing captions.

joy-caption-batch always overwrites and exits 0 even when captions failed, so:
- only images without a user caption are given to it (`--filelist`), user `.txt` captions are kept unless
  `--recaption`;
- every caption it should have written is checked (present, non-empty, starting with the trigger word);
- the failed images are retried once, alone (batch of 1: a failed generate() loses its whole batch);
- policy for images that still have no caption: they are dropped from training, with a warning naming them, when at
  most DROP_FRACTION of the images are affected and at least MIN_IMAGES remain; otherwise the stage fails with an
  error naming them.
The captions are downloaded to runs/<job>/<timestamp>/captions/ for review, and a new pod gets them from there.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from ..config.render import RenderedConfigs, joycaption_argv
from ..dataset.scan import MIN_IMAGES
from ..errors import PistachioError
from ..pods.bootstrap import joycaption_python
from ..pods.scripts import write_text_command
from .captioncheck import (
    TooManyFailed,
    captioner_problems,
    failed_captions,
    listed,
    to_drop,
    written_caption,
)
from .captioncheck import stem_txt as _stem_txt
from .context import RunContext
from .results import CaptionDone, UploadDone

CAPTION_JOB = "caption"
RETRY_JOB = "caption-retry"


class CaptionError(PistachioError):
    pass


def user_captions(ctx: RunContext) -> dict[str, str]:
    """image name -> its caption file name, for images whose user caption is kept."""
    if ctx.recaption:
        return {}
    return {i.name: _stem_txt(i.name) for i in ctx.dataset.usable if i.caption}


def local_captions(ctx: RunContext) -> list[str]:
    """Caption files already downloaded by an earlier caption stage of this run."""
    if not ctx.stages.is_done("caption") or not ctx.captions_dir.is_dir():
        return []
    return sorted(p.name for p in ctx.captions_dir.glob("*.txt"))


def upload(ctx: RunContext) -> UploadDone:
    remote = ctx.remote
    images_dir = str(ctx.job_layout.images_dir)
    images = {i.name for i in ctx.dataset.usable}
    keep_user = user_captions(ctx)
    from_run = local_captions(ctx)
    wanted = images | set(keep_user.values()) | set(from_run)
    # Remove what an earlier upload left that is no longer wanted (a changed dataset, --recaption).
    listing = remote.run(f"mkdir -p -- {shlex.quote(images_dir)} && cd -- {shlex.quote(images_dir)} && "
                         "find . -maxdepth 1 -type f -printf '%P\\n'").stdout.splitlines()
    stale = [name for name in listing if name and name not in wanted]
    if stale:
        remote.run(f"cd -- {shlex.quote(images_dir)} && rm -f -- " + " ".join(shlex.quote(n) for n in stale))
    user_files = images | set(keep_user.values())
    stats = remote.put_tree(ctx.dataset.folder, images_dir, include=lambda rel: rel in user_files)
    sent, size = stats.sent, stats.bytes
    if from_run:
        extra = remote.put_tree(ctx.captions_dir, images_dir, include=lambda rel: rel in set(from_run))
        sent, size = sent + extra.sent, size + extra.bytes
    ctx.say(f"uploaded {len(images)} images and {len(keep_user) + len(from_run)} captions "
            f"({sent} files sent, {size / 1e6:.1f} MB; the rest already there)")
    return UploadDone(images=len(images), user_captions=len(keep_user), sent=sent, bytes=size)


def _check(ctx: RunContext, names: list[str], staging: Path) -> dict[str, str]:
    """Download the captions of `names` into `staging` and return the failed ones: name -> why."""
    remote = ctx.remote
    wanted = {_stem_txt(n) for n in names}
    remote.get_tree(str(ctx.job_layout.images_dir), staging, include=lambda rel: rel in wanted, progress=False)
    return failed_captions(staging, names, ctx.job.trigger)


def _run_captioner(ctx: RunContext, rendered: RenderedConfigs, names: list[str], *, job: str, batch: int) -> None:
    remote = ctx.remote
    layout = ctx.job_layout
    settings = {**rendered.joycaption, "batch_processing_count": batch}
    filelist = layout.caption_filelist if job == CAPTION_JOB else layout.config_dir / "caption-retry-filelist.txt"
    paths = "\n".join(str(PurePosixPath(layout.images_dir) / n) for n in names)
    remote.run(write_text_command(str(filelist), paths), timeout=60)
    argv = joycaption_argv(settings, python=joycaption_python(str(remote.workspace)), filelist=filelist)
    argv.append("--print-captioning-status")
    env = {**rendered.joycaption_env, "HF_ENDPOINT": ctx.cloud.hf_endpoint}
    if ctx.cloud.hf_token:
        env["HF_TOKEN"] = ctx.cloud.hf_token
    remote.start_detached(job, shlex.join(argv), env=env, cwd=str(settings["workdir"]))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    done = 0
    pending = ""
    lines: list[str] = []
    with Progress(TextColumn("  captioning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=ctx.console, transient=True) as bar:
        task = bar.add_task("caption", total=len(names))

        def on_output(text: str) -> None:
            nonlocal pending, done
            pending += text
            *complete, pending = pending.split("\n")
            for line in complete:
                lines.append(line)
                if written_caption(line) is not None:
                    done += 1
                    bar.update(task, completed=done)

        code = remote.follow(job, on_output=on_output)
    if code != 0:
        tail = " | ".join(line for line in lines[-5:] if line.strip())
        raise CaptionError(f"joy-caption-batch exited with {code} on pod {ctx.pod_name}: {tail}",
                           "rerun the same command: it resumes at the caption stage")
    for message in captioner_problems(lines):
        ctx.say(f"[dim]captioner: {message.strip()[:200]}[/dim]")


def caption(ctx: RunContext, rendered: RenderedConfigs) -> CaptionDone:
    import shutil
    import tempfile

    names = [i.name for i in ctx.dataset.usable]
    keep_user = user_captions(ctx)
    need = [n for n in names if n not in keep_user]
    dropped: list[str] = []
    if need:
        batch = int(rendered.joycaption["batch_processing_count"])
        ctx.say(f"captioning {len(need)} image(s) with JoyCaption (batch {batch})"
                + (f"; keeping {len(keep_user)} user caption(s)" if keep_user else ""))
        with tempfile.TemporaryDirectory() as tmp:
            staging = Path(tmp)
            _run_captioner(ctx, rendered, need, job=CAPTION_JOB, batch=batch)
            failed = _check(ctx, need, staging)
            if failed:
                ctx.say(f"[yellow]{len(failed)} image(s) got no valid caption[/yellow] "
                        f"({', '.join(sorted(failed)[:5])}); retrying them once, one per batch")
                _run_captioner(ctx, rendered, sorted(failed), job=RETRY_JOB, batch=1)
                failed = _check(ctx, sorted(failed), staging)
            if failed:
                dropped = _apply_policy(ctx, names, failed)
    else:
        ctx.say(f"every image has a user caption ({len(keep_user)}): JoyCaption not needed")
    # the captions of every trained image, for review and for a new pod
    kept = [n for n in names if n not in dropped]
    wanted = {_stem_txt(n) for n in kept}
    folder = ctx.captions_dir
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ctx.remote.get_tree(str(ctx.job_layout.images_dir), folder, include=lambda rel: rel in wanted, progress=False)
    missing = sorted(n for n in kept if not (folder / _stem_txt(n)).is_file())
    if missing:
        raise CaptionError(f"captions missing on the pod for {', '.join(missing[:5])}",
                           "rerun with --recaption to caption every image again")
    ctx.say(f"captions: {folder} (review or edit them; copy edited .txt files next to your images to keep them)")
    return CaptionDone(captioned=len(need) - len(dropped), user_captions=len(keep_user), dropped=tuple(dropped),
                       folder=str(folder))


def _apply_policy(ctx: RunContext, names: list[str], failed: dict[str, str]) -> list[str]:
    try:
        dropped = to_drop(names, failed, MIN_IMAGES)
    except TooManyFailed as exc:
        raise CaptionError(str(exc), "write captions for them (a .txt with the trigger word next to each image) or "
                                     "remove them, then rerun") from None
    ctx.note(f"dropped {len(failed)} image(s) JoyCaption could not caption after a retry: {listed(failed)}. "
             "Write captions for them (a .txt next to each image) to train on them.")
    ctx.remote.run(
        f"cd -- {shlex.quote(str(ctx.job_layout.images_dir))} && rm -f -- "
        + " ".join(shlex.quote(_stem_txt(n)) for n in failed)
    )
    return dropped
