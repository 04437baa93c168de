"""loss.png: train and eval loss (raw + smoothed), the chosen step, and the under/over-trained zones.

Drawn on a bare matplotlib Figure (Agg canvas, no pyplot), so it never touches a GUI backend or global state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .choose import Selection


def plot_losses(sel: Selection, path: Path, title: str | None = None) -> Path:
    """`title`: who the run is (job, trigger, GPU class); the verdict and chosen step follow it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .choose import smooth

    fig = Figure(figsize=(11, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    if sel.train:
        steps, values = zip(*sel.train, strict=True)
        ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8, label="train loss")
        width = max(3, (len(values) // 25) | 1)
        ax.plot(steps, smooth(values, width), color="tab:blue", linewidth=1.5, label="train loss (smoothed)")

    rows = [r for r in sel.rows if math.isfinite(r.eval_loss)]
    ax.plot([r.step for r in rows], [r.eval_loss for r in rows], color="tab:orange", alpha=0.45, linewidth=0.8,
            marker=".", label=f"{sel.eval_name}/loss")
    ax.plot([r.step for r in rows], [r.smoothed for r in rows], color="tab:orange", linewidth=2,
            label=f"{sel.eval_name}/loss (smoothed)")
    saved = [r for r in rows if r.has_lora]
    ax.scatter([r.step for r in saved], [r.smoothed for r in saved], s=18, color="tab:orange", zorder=3,
               label="saved LoRA")

    first = min(r.step for r in rows)
    last = max(r.step for r in rows)
    if sel.undertrained_until is not None and sel.undertrained_until > first:
        ax.axvspan(first, sel.undertrained_until, color="gold", alpha=0.15, label="undertrained")
    if sel.overtrained_from is not None:
        ax.axvspan(sel.overtrained_from, last, color="tab:red", alpha=0.12, label="overtrained")
    ax.axvline(sel.step, color="tab:green", linestyle="--", linewidth=1.5, label=f"chosen: step {sel.step}")
    ax.annotate(f"step {sel.step}\n{sel.eval_loss:.4g}", (sel.step, sel.smoothed), xytext=(8, 12),
                textcoords="offset points", color="tab:green")

    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{title or sel.run_dir.name}: {sel.verdict}, step {sel.step}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside, not on, the curves
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
