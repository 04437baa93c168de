"""`render JOB --gpu CLASS --out DIR`: the files a job's pod would get, checked against DiffusionPipe's rules."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("job")
@click.option("--gpu", "gpu_name", default=None, help="GPU class (see `pistachio-infra gpus`); default: the job's.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write into."
)
@click.option(
    "--project", "project_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="pistachio.toml (default: ./pistachio.toml when present).",
)
@click.option("--workspace", default="/workspace", show_default=True, help="The pod's workspace root.")
@click.option(
    "--train-images", type=click.IntRange(min=1), default=None,
    help="Train-side image count for the save/eval cadence (default: counted in the job's dataset folder).",
)
def render(
    job: str, gpu_name: str | None, out_dir: Path, project_path: Path | None, workspace: str, train_images: int | None
) -> None:
    """Render DiffusionPipe/JoyCaption configs for a job and GPU class."""
    import shlex

    from ..catalog import gpu_class
    from ..config.project import find_project, resolve_job
    from ..config.render import render_job, write_rendered
    from ..errors import ConfigError
    from ..pods.layout import WorkspaceLayout

    spec = resolve_job(find_project(project_path), job)
    if gpu_name is None:
        if spec.gpu_auto or spec.gpu[0] == "auto":
            raise ConfigError(f"job {spec.name!r} has gpu = 'auto'", "pass --gpu CLASS (see `pistachio-infra gpus`)")
        gpu_name = spec.gpu[0]
    cls = gpu_class(gpu_name)
    rendered = render_job(spec, cls, WorkspaceLayout.at(workspace), train_images=train_images)
    for path in write_rendered(rendered, out_dir):
        click.echo(f"wrote {path}")
    cadence = rendered.cadence
    if cadence is not None:
        click.echo(
            f"{cls.name}: ~{cadence.estimated_steps} steps, eval + save every {cadence.every} steps ({cadence.basis})"
        )
    click.echo("caption: " + shlex.join(rendered.joycaption_argv))
    click.echo(f"train:   cd {rendered.train_cwd} && " + shlex.join(rendered.train_argv))
