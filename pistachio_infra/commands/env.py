"""`pistachio-infra env`: the persistent environment (model-cache volume, pod template, optional ComfyUI pod).

pulumi is imported inside each command only: `--help` and every other command work without it or its CLI.
"""

from __future__ import annotations

import json

import click

STACK_OPTION = click.option(
    "--stack", default=None, help="Stack name (default: 'sandbox' in sandbox mode, else 'main')."
)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _options(f):  # type: ignore[no-untyped-def]
    for option in reversed(
        [
            click.option("--gpu", "gpus", multiple=True, help="GPU class or RunPod GPU type id to stay close to "
                         "(repeatable; default: every class)."),
            click.option("--data-center", default=None, help="Pin the data center (default: where the GPUs have "
                         "stock, pinned on the first `env up`)."),
            click.option("--volume-gb", type=click.IntRange(10, 4096), default=None,
                         help="Model-cache volume size in GB (default 100; grows in place, never shrinks)."),
            click.option("--image", default=None, help="Pod image for the template (default: the pinned image)."),
            click.option("--comfyui/--no-comfyui", default=None, help="Keep a ComfyUI pod up on the volume."),
            click.option("--comfyui-gpu", default=None, help="GPU class or id of the ComfyUI pod."),
            STACK_OPTION,
        ]
    ):
        f = option(f)
    return f


def _env_options(**kw):  # type: ignore[no-untyped-def]
    from ..stacks.automation import EnvOptions

    return EnvOptions(
        gpus=tuple(kw["gpus"]),
        data_center=kw["data_center"],
        volume_gb=kw["volume_gb"],
        image=kw["image"],
        comfyui=kw["comfyui"],
        comfyui_gpu=kw["comfyui_gpu"],
    )


def _summary(changes: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(changes.items()) if v) or "no changes"


@click.group()
def env() -> None:
    """Persistent infrastructure (model-cache volume, template, ComfyUI pod) via Pulumi.

    \b
    State: a local file backend under the state dir; the Pulumi CLI is needed
    (scripts/build_pulumi.sh builds it, or the official installer).
    """


@env.command()
@_options
def preview(stack: str | None, **kw) -> None:  # type: ignore[no-untyped-def]
    """Show what `env up` would change."""
    from ..stacks import automation

    changes = automation.preview(_env_options(**kw), stack, say=_say)
    click.echo(f"preview: {_summary(changes)}")


@env.command()
@_options
def up(stack: str | None, **kw) -> None:  # type: ignore[no-untyped-def]
    """Create or update the environment."""
    from ..stacks import automation

    outputs = automation.up(_env_options(**kw), stack, say=_say)
    click.echo(json.dumps(outputs, indent=2, sort_keys=True))


@env.command()
@STACK_OPTION
def refresh(stack: str | None) -> None:
    """Compare the state with RunPod (things deleted or changed outside this tool)."""
    from ..stacks import automation

    changes = automation.refresh(stack, say=_say)
    click.echo(f"refresh: {_summary(changes)}")


@env.command()
@STACK_OPTION
@click.option("--yes", is_flag=True, help="Do not ask (the model-cache volume and its files are deleted).")
def destroy(stack: str | None, yes: bool) -> None:
    """Delete everything the environment holds (volume, template, ComfyUI pod)."""
    if not yes:
        click.confirm("Delete the environment, including the model-cache volume?", abort=True)
    from ..stacks import automation
    from ..stacks.outputs import resource_count

    changes = automation.destroy(stack, say=_say)
    click.echo(f"destroy: {_summary(changes)}; {resource_count(stack)} resources left")


@env.command()
@STACK_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def outputs(stack: str | None, as_json: bool) -> None:
    """Print the deployed environment's outputs (no Pulumi CLI needed)."""
    from dataclasses import asdict

    from ..stacks import outputs as read_outputs

    found = read_outputs(stack)
    if found is None:
        if as_json:
            click.echo("null")
        else:
            click.echo("no environment deployed (run `pistachio-infra env up`)")
        return
    if as_json:
        click.echo(json.dumps(asdict(found) | {"comfyui_ssh": found.comfyui_ssh}, indent=2))
        return
    click.echo(f"stack:        {found.stack}")
    click.echo(f"volume:       {found.volume_id} in {found.data_center_id} ({found.volume_gb} GB)")
    click.echo(f"template:     {found.template_id} ({found.image})")
    click.echo(f"comfyui ssh:  {found.comfyui_ssh or '-'}")
