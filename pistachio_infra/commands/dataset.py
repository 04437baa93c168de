"""`dataset check DIR`: the preflight a job runs before any pod is rented ($0, nothing in DIR is modified)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def dataset() -> None:
    """Check an image folder before any money is spent."""


@dataset.command("check")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--trigger", default=None, help="The job's trigger word, to check it and the captions.")
@click.option("--seed", default=42, show_default=True, help="Seed of the train/eval split.")
@click.option("--eval-fraction", default=0.2, show_default=True, type=click.FloatRange(0.01, 0.5))
@click.option(
    "--manifest", "manifest_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the sha256 manifest (and split) as JSON here (not inside FOLDER).",
)
def check(folder: Path, trigger: str | None, seed: int, eval_fraction: float, manifest_path: Path | None) -> None:
    """Decode every image, check formats, count, sizes, duplicates, captions and the trigger word; show the split."""
    from ..console import make_console
    from ..dataset.scan import raise_if_refused, scan_dataset

    report = scan_dataset(folder, trigger=trigger, seed=seed, eval_fraction=eval_fraction)
    console = make_console()
    console.print(
        f"{report.folder}: {len(report.usable)} usable image(s), {len(report.captioned)} captioned, "
        f"{len(report.to_caption)} to caption"
    )
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for error in report.errors:
        console.print(f"[red]problem:[/] {error}")
    if report.train:
        console.print(
            f"split (seed {seed}): {len(report.train)} train, {len(report.eval)} eval: {', '.join(report.eval)}"
        )
    if manifest_path is not None:
        console.print(f"manifest: {report.write_manifest(manifest_path)}")
    raise_if_refused(report)
    console.print("[green]ok[/]: this folder can be trained on")
