"""`train JOB`: images in, a LoRA installed in ComfyUI out, the pod torn down; resumable (pipeline/driver.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command()
@click.argument("job")
@click.option("--project", "project_path", type=click.Path(path_type=Path), default=None,
              help="pistachio.toml to read (default: ./pistachio.toml).")
@click.option("--restart", is_flag=True, help="Start over instead of resuming an unfinished run of this job.")
@click.option("--recaption", is_flag=True, help="Caption every image with JoyCaption, replacing your .txt captions.")
@click.option("--gpu", default=None, help="GPU class, or classes in fallback order (comma-separated); "
                                          "overrides the job's `gpu`.")
@click.option("--max-hours", type=float, default=12.0, show_default=True,
              help="Hard limit: the pod's watchdog terminates it after this long, whatever happens.")
@click.option("--volume/--no-volume", default=None,
              help="Mount the env stack's network volume (model cache). Default: when `env up` created one.")
@click.option("--allow-drift", is_flag=True,
              help="Train even when the pod cannot be made exactly as the project's pistachio.lock (noted in the "
                   "report).")
@click.option("--detach", is_flag=True,
              help="Return once the pod's supervisor runs the training (needs project.hf_namespace): the pod "
                   "finishes, publishes and shuts down on its own; `train JOB` again follows it, `pull JOB` "
                   "installs the result.")
@click.option("--no-verify", "no_verify", is_flag=True,
              help="Skip the samples (with and without the LoRA, through a ready ComfyUI) after install.")
@click.option("--verify-on-pod", is_flag=True,
              help="When no ready ComfyUI is configured (project.comfyui_url), rent a ComfyUI pod for the samples: "
                   "its rent and a ~21 GB download of Wan 2.1 files, both shown before renting.")
@click.option("-y", "--yes", is_flag=True, help="Rent without asking (the plan and estimate are still printed).")
def train(job: str, project_path: Path | None, restart: bool, recaption: bool, gpu: str | None, max_hours: float,
          volume: bool | None, allow_drift: bool, detach: bool, no_verify: bool, verify_on_pod: bool,
          yes: bool) -> None:
    """Train JOB (a job in pistachio.toml, a job TOML or a dataset folder) and install its LoRA.

    \b
    preflight → provision → bootstrap → upload → caption → split → render → train → select → harvest → install
    → verify (samples with and without the LoRA, through a ready ComfyUI; --no-verify skips)
    Rerun the same command after an interruption to continue where it stopped. With project.hf_namespace set,
    everything after the upload runs on the pod under its supervisor: Ctrl-C (or --detach) leaves it to the pod,
    a rerun re-attaches or installs the published result; a second Ctrl-C (or `down`) stops it.
    """
    from ..config.project import find_project, locate_project_file, resolve_job
    from ..pipeline.detach import Detached
    from ..pipeline.driver import TrainRequest, run_training

    project = find_project(project_path)
    spec = resolve_job(project, job)
    if project_path is not None:
        base = Path(project_path).resolve()
        base = base if base.is_dir() else base.parent
    else:
        found = locate_project_file()  # the nearest pistachio.toml, here or in a parent folder
        base = found.parent if found is not None else Path.cwd()
    classes = tuple(c.strip() for c in gpu.split(",") if c.strip()) if gpu else ()
    request = TrainRequest(job=spec, project=project, base_dir=base, restart=restart,
                           recaption=recaption or spec.recaption, gpu=classes, max_hours=max_hours, volume=volume,
                           allow_drift=allow_drift, detach=detach, verify=not no_verify,
                           verify_on_pod=verify_on_pod)
    console = _console()
    request.confirm = confirm_with(console, spec, max_hours, yes=yes, command=f"train {job}")
    try:
        result = run_training(request, console)
    except Detached as left:
        console.print()
        for line in left.lines():
            console.print(line, highlight=False, soft_wrap=True)
        return
    show_result(console, result)


def _console() -> Any:
    from ..console import make_console

    return make_console()


def confirm_with(console: Any, spec: Any, max_hours: float, *, yes: bool, command: str) -> Any:
    """The driver's confirm hook: print the plan (GPU, data center, $/h, duration, $ range, limit) and ask."""

    def confirm(classes: tuple[str, ...], cloud: Any, store: Any) -> None:
        from ..confirm import ask, train_plan

        plan = train_plan(spec, classes, cloud, store, max_hours=max_hours)
        ask(plan.lines(), yes=yes, command=command, echo=lambda line: console.print(line, markup=False))

    return confirm


def show_result(console: Any, result: Any) -> None:
    from ..money import usd

    console.print()
    console.print(f"[bold green]done[/bold green]: step {result.step} ({result.verdict}), "
                  f"billed {usd(result.billed_usd)}")
    console.print(f"  report  {result.report}")
    console.print(f"  LoRA    {result.installed or result.lora}")
