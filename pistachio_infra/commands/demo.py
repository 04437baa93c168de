"""`demo`: the whole pipeline against the local sandbox with a generated character dataset ($0), through the sample
renders with and without the LoRA (on a ComfyUI pod of the sandbox, since the demo has no ComfyUI of its own)."""

from __future__ import annotations

import os
import time

import click

DEMO_TOML = """\
# The demo project written by `pistachio-infra demo` (it runs against the local sandbox: $0).
[project]
name = "demo"
comfyui_loras_dir = "ComfyUI/models/loras"   # a local ComfyUI-style folder next to this file

[jobs.pip]
character = "Pip"
trigger = "pip7"
dataset = "images"
gpu = ["a6000", "a40"]
epochs = {epochs}
checkpoints = 10
"""


@click.command()
@click.option("--images", default=24, show_default=True, type=click.IntRange(6, 200), help="Images to generate.")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(1, 1000))
@click.option("--keep-sandbox", is_flag=True, help="Leave the sandbox running afterwards.")
@click.option("--restart", is_flag=True, help="Start the demo job over instead of resuming it.")
def demo(images: int, epochs: int, keep_sandbox: bool, restart: bool) -> None:
    """Run the whole train pipeline on a generated character in the local sandbox (no account, no cost).

    Uses its own state folder (<state dir>/demo, or $PISTACHIO_HOME when set), so it never touches real pods.
    """
    from ..console import make_console
    from ..endpoints import cloud_choice
    from ..paths import state_dir
    from ..settings import get_settings

    if get_settings().home is None:
        # Written, not read: this process and its children (the sandbox, the pods' helpers) keep state there.
        os.environ["PISTACHIO_HOME"] = str(state_dir() / "demo")
    cloud_choice().use_sandbox()

    from ..config.project import load_project
    from ..dataset.demo import generate_dataset
    from ..pipeline.driver import TrainRequest, run_training
    from ..sandbox import control
    from .train import confirm_with, show_result

    console = make_console()
    t0 = time.monotonic()
    home = state_dir()
    was_running = control.status() is not None
    console.print(f"[bold]pistachio-infra demo[/bold] (state in {home})")
    if not was_running:
        console.print("  starting the local sandbox (a RunPod stand-in on 127.0.0.1)")
    if was_running:
        control.ensure_running()
    else:
        from ..paths import data_dir

        control.start(control.sandbox_dir(), data_dir() / "demo-scenario.toml")
    project_dir = home / "demo-project"
    dataset = project_dir / "images"
    if len(list(dataset.glob("*.png"))) != images:
        for old in dataset.glob("*.png"):
            old.unlink()
        generate_dataset(dataset, images)
        console.print(f"  generated {images} images of 'Pip' in {dataset}")
    toml = project_dir / "pistachio.toml"
    toml.write_text(DEMO_TOML.format(epochs=epochs))
    project = load_project(toml)
    try:
        # the demo rents only sandbox pods ($0): the plan is shown, the question is implied
        result = run_training(TrainRequest(job=project.job("pip"), project=project, base_dir=project_dir,
                                           restart=restart, verify_on_pod=True,
                                           confirm=confirm_with(console, project.job("pip"), 12.0, yes=True,
                                                                command="demo")), console)
    finally:
        if not keep_sandbox and not was_running:
            control.stop()
    show_result(console, result)
    console.print(f"  total   {time.monotonic() - t0:.0f}s")
    console.print("\nNext: `pistachio-infra init` in your own folder, then `pistachio-infra train JOB`.")
