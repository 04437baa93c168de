"""Select, harvest and install: choose the checkpoint from the mirrored eval loss, download only its adapter files
(sha256-checked against the pod, opened with safetensors), name it for ComfyUI and install it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..errors import PistachioError
from ..pods.layout import EVAL_NAME
from ..selection.choose import LORA_FILE, Selection, select_checkpoint
from .context import RunContext
from .results import HarvestDone, InstallDone, PublishDone, SelectDone, TrainDone

CONFIG_FILE = "adapter_config.json"


class HarvestError(PistachioError):
    pass


def selection(ctx: RunContext) -> Selection:
    """The selection for the trained run (recomputed from the local mirror: deterministic)."""
    trained = ctx.stages.get(TrainDone)
    assert trained is not None, "select follows train"
    return select_checkpoint(ctx.mirror_dir / trained.run, eval_name=EVAL_NAME, saved_folders=list(trained.saved))


def select(ctx: RunContext) -> SelectDone:
    sel = selection(ctx)
    colour = "green" if sel.verdict == "converged" else "yellow"
    ctx.say(f"[{colour}]{sel.verdict}[/{colour}]: {sel.message}")
    for warning in sel.warnings:
        ctx.say(f"[yellow]warning:[/yellow] {warning}")
    return SelectDone(step=sel.step, checkpoint=sel.checkpoint_name, verdict=sel.verdict, eval_loss=sel.eval_loss,
                      message=sel.message, warnings=tuple(sel.warnings))


def lora_name(ctx: RunContext, step: int) -> str:
    character = re.sub(r"[^A-Za-z0-9_-]+", "_", ctx.job.character).strip("_") or "character"
    return f"{character}_{ctx.job.trigger}_step{step}.safetensors"


def _verify(path: Path) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            keys = list(handle.keys())
    except Exception as exc:
        raise HarvestError(f"{path.name} does not open as safetensors ({exc})", "rerun to download it again") from None
    if not keys:
        raise HarvestError(f"{path.name} holds no tensors", "check the training log; rerun with --restart")
    return len(keys)


def harvest(ctx: RunContext) -> HarvestDone:
    """Download the chosen LoRA (+ adapter_config.json) from the pod, or take it from the local mirror when the pod
    holding it is gone (interruptible pods mirror their LoRAs)."""
    from ..pods.watchdog import mark_harvested
    from ..remote.transfer import file_sha256

    chosen, trained = ctx.stages.get(SelectDone), ctx.stages.get(TrainDone)
    assert chosen is not None and trained is not None, "harvest follows train and select"
    run, folder = trained.run, chosen.checkpoint
    dest_dir = ctx.run_folder / "lora"
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = lora_name(ctx, chosen.step)
    dest = dest_dir / name
    config_dest = dest_dir / f"{Path(name).stem}.adapter_config.json"
    from_pod = ctx.session is not None and not published(ctx)
    if published(ctx):  # the pod's supervisor published it (and ended the pod)
        from .detach import harvest_published

        source = harvest_published(ctx, dest, config_dest)
        digest = file_sha256(dest)
    elif from_pod:
        base = f"{ctx.job_layout.output_dir}/{run}/{folder}"
        digest = ctx.remote.get_file(f"{base}/{LORA_FILE}", dest)
        ctx.remote.get_file(f"{base}/{CONFIG_FILE}", config_dest, progress=False)
        source = f"pod {ctx.pod_name}"
    else:
        local = ctx.mirror_dir / run / folder
        if not (local / LORA_FILE).is_file():
            raise HarvestError(f"the chosen checkpoint {folder} of run {run} is neither on a live pod nor mirrored",
                               "rerun with --restart to train again")
        shutil.copyfile(local / LORA_FILE, dest)
        if (local / CONFIG_FILE).is_file():
            shutil.copyfile(local / CONFIG_FILE, config_dest)
        digest = file_sha256(dest)
        source = "the local mirror"
    tensors = _verify(dest)
    ctx.say(f"harvested {folder} from {source}: {dest.name} ({dest.stat().st_size / 1e6:.1f} MB, {tensors} tensors)")
    if from_pod:
        mark_harvested(ctx.remote)
    return HarvestDone(path=str(dest), sha256=digest, checkpoint=folder, tensors=tensors)


def published(ctx: RunContext) -> bool:
    """Whether the pod's supervisor published the chosen LoRA (harvest takes it from the HF repo: no pod)."""
    done = ctx.stages.get(PublishDone)
    return done is not None and bool(done.repo)


def mirrored(ctx: RunContext) -> bool:
    """Whether harvest can work without a pod (the chosen checkpoint's LoRA is in the local mirror)."""
    trained = ctx.stages.get(TrainDone)
    if trained is None or not trained.run:
        return False
    chosen = ctx.stages.get(SelectDone)
    folder = chosen.checkpoint if chosen is not None else selection(ctx).checkpoint_name
    return bool(folder) and (ctx.mirror_dir / trained.run / folder / LORA_FILE).is_file()


def install(ctx: RunContext) -> InstallDone:
    from ..comfy.loras import install_lora

    harvested = ctx.stages.get(HarvestDone)
    assert harvested is not None, "install follows harvest"
    lora = Path(harvested.path)
    target = ctx.project.project.comfyui_loras_dir if ctx.project is not None else None
    if not target:
        ctx.note(f"no comfyui_loras_dir in pistachio.toml: the LoRA stays at {lora}")
        return InstallDone(installed=None)
    done = install_lora(lora, target, store=ctx.store)
    ctx.say(f"[green]installed[/green] {done.location}")
    return InstallDone(installed=str(done.location), sha256=done.sha256)
