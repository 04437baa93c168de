"""`pull JOB`: install a published LoRA (the job's private HF repo) into ComfyUI and keep its report, renting
nothing (pipeline/publish.py)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("job")
@click.option("--project", "project_path", type=click.Path(path_type=Path), default=None,
              help="pistachio.toml to read (default: ./pistachio.toml).")
def pull(job: str, project_path: Path | None) -> None:
    """Install JOB's published LoRA (from <hf_namespace>/<job>-lora) into ComfyUI and write its report locally."""
    from ..comfy.loras import install_lora
    from ..config.project import find_project, resolve_job
    from ..console import make_console
    from ..credentials import get_secret
    from ..endpoints import resolve_cloud
    from ..errors import ConfigError
    from ..pipeline.publish import pull as download
    from ..pipeline.publish import repo_id_for

    console = make_console()
    project = find_project(project_path)
    spec = resolve_job(project, job)
    namespace = project.project.hf_namespace if project is not None else None
    if not namespace:
        raise ConfigError("no hf_namespace in pistachio.toml's [project]: nothing is published to pull",
                          "set hf_namespace (your HF user or org) and train again, or use `train` to finish a run")
    if project_path is not None:
        base = Path(project_path).resolve()
        base = base if base.is_dir() else base.parent
    else:
        base = Path.cwd()
    repo_id = repo_id_for(namespace, spec.name)
    dest = base / "runs" / spec.name / "published"
    lora = download(repo_id, dest, token=get_secret("HF_TOKEN"), endpoint=resolve_cloud().hf_endpoint)
    named = dest / "lora" / f"{spec.character}_{spec.trigger}.safetensors".replace(" ", "_")
    named.parent.mkdir(parents=True, exist_ok=True)
    named.write_bytes(lora.read_bytes())
    console.print(f"pulled {repo_id} into {dest} (report: {dest / 'report.md'})")
    target = project.project.comfyui_loras_dir if project is not None else None
    if not target:
        console.print(f"no comfyui_loras_dir in pistachio.toml: the LoRA stays at {named}")
        return
    done = install_lora(named, target)
    console.print(f"[green]installed[/green] {done.location}")
