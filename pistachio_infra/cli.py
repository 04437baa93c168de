"""The `pistachio-infra` command line: a thin click group that loads each command's module only when it runs.

`--help` lists every command from the table below without importing any of them, so it stays fast and never
imports runpod, pulumi, wandb, fabric, huggingface_hub or rich.progress.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import click

from . import __version__
from .errors import PistachioError

# name -> (module under pistachio_infra.commands, attribute). The help text lives once, in the command's docstring;
# `--help` reads its first sentence from the module's source without importing it (see `summary`).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "demo"),
    "init": ("setup", "init"),
    "doctor": ("setup", "doctor"),
    "gpus": ("gpus", "gpus"),
    "render": ("render", "render"),
    "dataset": ("dataset", "dataset"),
    "sandbox": ("sandbox", "sandbox"),
    "up": ("pods", "up"),
    "status": ("pods", "status"),
    "ssh": ("pods", "ssh"),
    "logs": ("pods", "logs"),
    "down": ("pods", "down"),
    "reap": ("pods", "reap"),
    "train": ("train", "train"),
    "pull": ("pull", "pull"),
    "select": ("select", "select"),
    "campaign": ("campaign", "campaign"),
    "cost": ("cost", "cost"),
    "dashboard": ("dashboard", "dashboard"),
    "env": ("env", "env"),
    "lock": ("lock", "lock"),
    "rebuild": ("lock", "rebuild"),
    "comfy": ("comfy", "comfy"),
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


SUMMARY_LIMIT = 120  # characters of the docstring's first sentence shown in the command list


def summary(module_name: str, attr: str) -> str:
    """The command's short help as click would make it from its docstring, read from the module's source without
    importing it (importing every command would load rich, pydantic, httpx...): the first string literal after
    `def <attr>(`, decoded by `ast.literal_eval`. tests/test_cli_basics.py holds it equal to the imported command's."""
    import ast

    source = (Path(__file__).parent / "commands" / f"{module_name}.py").read_text()
    at = source.find(f"\ndef {attr}(")
    opening = source.find('"""', at) if at >= 0 else -1
    closing = source.find('"""', opening + 3) if opening >= 0 else -1
    if closing < 0:
        return ""
    prefix = "r" if source[opening - 1] in "rR" else ""
    doc = inspect.cleandoc(ast.literal_eval(prefix + source[opening:closing + 3]))
    return click.Command(attr, help=doc).get_short_help_str(SUMMARY_LIMIT)  # click's own rule, as if imported


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry
        module = importlib.import_module(f"pistachio_infra.commands.{module_name}")
        return _accept_sandbox_flag(getattr(module, attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, summary(*entry)) for name, entry in COMMANDS.items()]
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
