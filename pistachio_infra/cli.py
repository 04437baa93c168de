"""The `pistachio-infra` command line: a thin click group that loads each command's module only when it runs.

`--help` lists every command from the table below without importing any of them, so it stays fast and never
imports runpod, pulumi, wandb, fabric, huggingface_hub or rich.progress.
"""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import PistachioError

# name -> (module under pistachio_infra.commands, attribute, one-line help shown in `--help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("demo", "demo", "Run the whole pipeline on a generated dataset in the local sandbox ($0)."),
    "init": ("setup", "init", "Write a commented pistachio.toml and create the pod SSH key."),
    "doctor": ("setup", "doctor", "Check credentials, SSH key and tools; say how to fix what is missing."),
    "gpus": ("gpus", "gpus", "List GPU classes with VRAM, training profile and price."),
    "render": ("render", "render", "Render DiffusionPipe/JoyCaption configs for a job and GPU class."),
    "dataset": ("dataset", "dataset", "Check an image folder before any money is spent."),
    "sandbox": ("sandbox", "sandbox", "Start, stop or inspect the local RunPod stand-in."),
    "up": ("pods", "up", "Rent a ready pod (SSH, DiffusionPipe, JoyCaption, model files)."),
    "status": ("pods", "status", "Show pods, uptime and money spent so far."),
    "ssh": ("pods", "ssh", "Open a shell on a pod."),
    "logs": ("pods", "logs", "Show a pod's job log."),
    "down": ("pods", "down", "Terminate a pod (or --all)."),
    "reap": ("pods", "reap", "Find and terminate pods that no live job of ours is using."),
    "train": ("train", "train", "Images in, LoRA installed in ComfyUI out: the whole pipeline for one job."),
    "pull": ("pull", "pull", "Install a job's published LoRA (its private HF repo) into ComfyUI, renting nothing."),
    "select": ("select", "select", "Choose the best checkpoint of a DiffusionPipe run by eval loss."),
    "campaign": ("campaign", "campaign", "Plan and run many LoRAs under one hard budget."),
    "cost": ("cost", "cost", "Estimated vs billed cost per job and campaign."),
    "dashboard": ("dashboard", "dashboard", "A local web page: live pods, jobs, loss curves, datasets and money."),
    "env": ("env", "env", "Persistent infrastructure (model-cache volume, template) via Pulumi."),
    "lock": ("lock", "lock", "Write or check pistachio.lock: everything that makes an environment."),
    "rebuild": ("lock", "rebuild", "Bootstrap a pod exactly as pistachio.lock says, and verify it."),
    "comfy": ("comfy", "comfy", "Resolve a ComfyUI workflow's missing custom nodes and models."),
}


def _sandbox_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        from .endpoints import CloudChoice

        choice = ctx.find_object(CloudChoice)
        if choice is not None:
            choice.use_sandbox()


def _accept_sandbox_flag(command: click.Command) -> click.Command:
    """Let `--sandbox` follow any command name too (`train JOB --sandbox`), down through subcommands."""
    if not getattr(command, "_pistachio_sandbox_flag", False):
        if not any("--sandbox" in p.opts for p in command.params if isinstance(p, click.Option)):
            command.params.append(click.Option(["--sandbox"], is_flag=True, expose_value=False, is_eager=True,
                                               callback=_sandbox_flag, help="Same as the global --sandbox."))
        command._pistachio_sandbox_flag = True  # type: ignore[attr-defined]
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                _accept_sandbox_flag(sub)
    return command


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        module = importlib.import_module(f"pistachio_infra.commands.{module_name}")
        return _accept_sandbox_flag(getattr(module, attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pistachio-infra")
@click.option(
    "--sandbox",
    is_flag=True,
    envvar="PISTACHIO_SANDBOX",
    help="Use the local RunPod sandbox (started if needed) instead of RunPod. Same as PISTACHIO_SANDBOX=1.",
)
@click.pass_context
def cli(ctx: click.Context, sandbox: bool) -> None:
    """Train character LoRAs on rented RunPod GPUs and install them into ComfyUI.

    \b
    First time?  pistachio-infra demo        (the whole pipeline in a local sandbox, $0)
    Then:        pistachio-infra init        (pistachio.toml + SSH key)
                 pistachio-infra doctor      (what is missing and how to fix it)
                 pistachio-infra train JOB   (images in, LoRA in ComfyUI out, pod torn down)
    """
    from .endpoints import CloudChoice

    ctx.obj = CloudChoice(sandbox=False)  # the one cloud choice for this invocation; commands resolve it once
    if sandbox:
        ctx.obj.use_sandbox()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except PistachioError as exc:
        click.secho(f"error: {exc.one_line()}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
