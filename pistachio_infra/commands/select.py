"""`select RUN_DIR`: choose the best checkpoint of a DiffusionPipe run directory downloaded by hand."""

from __future__ import annotations

import math
from pathlib import Path

import click

VERDICT_STYLE = {"converged": "green", "overtrained": "yellow", "undertrained": "yellow", "inconclusive": "yellow"}


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--eval-name", default=None, help="Eval dataset name (the NAME of NAME/loss); found by itself if one.")
@click.option(
    "--tolerance", default=0.01, show_default=True, type=click.FloatRange(0, 1, max_open=True),
    help="Prefer the earliest step whose smoothed eval loss is within this fraction of the minimum.",
)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the loss plot [default: RUN_DIR/loss.png].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document on stdout) instead of the table.")
def select(run_dir: Path, eval_name: str | None, tolerance: float, plot_path: Path | None, as_json: bool) -> None:
    """Choose the convergence step of RUN_DIR (event files + stepN/ folders) by its smoothed eval loss.

    Prints the table of eval losses, the chosen step and the verdict (converged, undertrained, overtrained), and
    writes the loss plot.
    """
    from rich.table import Table

    from ..console import make_console
    from ..selection.choose import plot_selection, select_checkpoint

    sel = select_checkpoint(run_dir, eval_name=eval_name, tolerance=tolerance)
    if as_json:
        from ..jsonout import emit

        plot = plot_selection(sel, plot_path or run_dir / "loss.png")
        emit({"run_dir": str(run_dir), "eval_name": sel.eval_name, "step": sel.step, "verdict": sel.verdict,
              "message": sel.message, "checkpoint_dir": str(sel.checkpoint_dir), "plot": str(plot),
              "rows": [{"step": r.step, "eval_loss": r.eval_loss, "smoothed": r.smoothed, "has_lora": r.has_lora}
                       for r in sel.rows],
              "notes": list(sel.notes), "warnings": list(sel.warnings)})
        return
    console = make_console()
    table = Table(title=f"{sel.eval_name}/loss by step", title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("eval loss", justify="right")
    table.add_column("smoothed", justify="right")
    table.add_column("LoRA")
    for row in sel.rows:
        chosen = row.step == sel.step
        folder = sel.checkpoints.get(row.step, "") if row.has_lora else "—"
        table.add_row(
            str(row.step),
            f"{row.eval_loss:.5f}" if math.isfinite(row.eval_loss) else "nan",
            f"{row.smoothed:.5f}" if math.isfinite(row.smoothed) else "—",
            f"{folder}  ← chosen" if chosen else folder,
            style="bold green" if chosen else None,
        )
    console.print(table)
    for note in sel.notes:
        console.print(f"[dim]note:[/] {note}", soft_wrap=True)
    for warning in sel.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    console.print(f"[{VERDICT_STYLE[sel.verdict]}]{sel.verdict}[/]: {sel.message}", soft_wrap=True)
    console.print(f"chosen: step {sel.step} → {sel.checkpoint_dir}", soft_wrap=True)
    console.print(f"plot: {plot_selection(sel, plot_path or run_dir / 'loss.png')}", soft_wrap=True)
