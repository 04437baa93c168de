"""Choose the checkpoint of a DiffusionPipe run from its eval loss.

The source of truth is `{eval_name}/loss` in the run's TensorBoard event files (the mean over DiffusionPipe's nine
fixed-timestep quantiles). DiffusionPipe evaluates and saves the same weights within one loop iteration, so with
`eval_every_n_steps == save_every_n_steps` the eval point at x=S belongs to folder `stepS`; an eval at the end of
epoch N (x = the step that ended it) belongs to folder `epochN`.

Smoothing: a running median of 3 (Tukey's end-point rule) then a centred [1, 2, 1] average. The median drops any
single spike completely, whichever way it points, where an EMA would smear it over the following points; the
centred average then takes out most of the remaining noise without the lag an EMA adds, which would shift the
minimum to a later step. The noise σ used for the verdicts comes from the raw values' second differences
(1.4826 · MAD / √6): a trend cancels out, a spike does not move a median.

Rule: among steps with a saved LoRA (never step 0, the eval before the first step), take the lowest smoothed eval
loss and prefer the earliest step within `tolerance` (relative) of it — fewer steps, same quality, less baked in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from ..errors import ConfigError, PistachioError
from .tbevents import EPOCH_LOSS, TRAIN_LOSS, Point, RunScalars, read_scalars

DEFAULT_TOLERANCE = 0.01
LORA_FILE = "adapter_model.safetensors"
CHECKPOINT_DIR_RE = re.compile(r"^(step|epoch)(\d+)$")
FIX_NO_EVAL = (
    "add eval datasets to the training TOML, e.g. eval_datasets = [{name = 'val', config = 'eval_dataset.toml'}], "
    "with eval_every_n_steps equal to save_every_n_steps, and train again"
)

Verdict = Literal["converged", "undertrained", "overtrained", "inconclusive"]


class Row(NamedTuple):
    step: int
    eval_loss: float
    smoothed: float
    has_lora: bool


@dataclass
class Selection:
    step: int
    checkpoint_dir: Path
    eval_loss: float
    smoothed: float
    verdict: Verdict
    message: str
    rows: list[Row]
    eval_name: str
    checkpoint_name: str  # the folder name in the run dir: "step120" or "epoch4"
    minimum_step: int  # the step of the lowest smoothed eval loss (the chosen one may be earlier, within tolerance)
    tolerance: float
    noise: float
    run_dir: Path
    checkpoints: dict[int, str]  # step -> folder name, for every saved LoRA that has an eval loss
    train: list[tuple[int, float]] = field(default_factory=list)
    undertrained_until: int | None = None  # plot zone: steps before this were still clearly improving
    overtrained_from: int | None = None  # plot zone: from here on the eval loss is above the minimum by > noise
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def smooth(values: Sequence[float], width: int = 3) -> list[float]:
    """Running median of 3 (Tukey end-point rule), then a centred triangular average of odd `width` (3 = [1,2,1])."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) < 3:
        return x.tolist()
    med = x.copy()
    med[1:-1] = np.median(np.stack([x[:-2], x[1:-1], x[2:]]), axis=0)
    med[0] = np.median([x[0], med[1], 3 * med[1] - 2 * med[2]])
    med[-1] = np.median([x[-1], med[-2], 3 * med[-2] - 2 * med[-3]])
    half = max(1, width // 2)
    kernel = np.concatenate([np.arange(1, half + 2), np.arange(half, 0, -1)]).astype(float)
    total = np.convolve(med, kernel, mode="same")
    weight = np.convolve(np.ones_like(med), kernel, mode="same")
    return (total / weight).tolist()


def noise_scale(values: Sequence[float]) -> float:
    """Robust noise σ from second differences (a linear trend cancels out): 1.4826 · MAD(Δ²x) / √6."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) < 3:
        return 0.0
    d2 = x[:-2] - 2 * x[1:-1] + x[2:]
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6))


def saved_loras(run_dir: Path) -> list[str]:
    """Folders `stepN` / `epochN` directly in `run_dir` whose adapter_model.safetensors opens."""
    from safetensors import safe_open

    names = []
    for folder in sorted(Path(run_dir).iterdir()):
        if not (folder.is_dir() and CHECKPOINT_DIR_RE.match(folder.name) and (folder / LORA_FILE).is_file()):
            continue
        try:
            with safe_open(str(folder / LORA_FILE), framework="np") as handle:
                if not list(handle.keys()):
                    continue
        except Exception:  # a save cut short: not a checkpoint we can offer
            continue
        names.append(folder.name)
    return names


def select_checkpoint(
    run_dir: Path,
    eval_name: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    saved_folders: Iterable[str] | None = None,
) -> Selection:
    """Read `run_dir`'s event files and choose a checkpoint.

    `saved_folders` names the `stepN`/`epochN` folders that hold a LoRA when they are not on this machine (the
    pipeline lists them on the pod and downloads only the event files); by default `run_dir` is scanned.
    """
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance {tolerance} is out of range", "use a relative tolerance such as 0.01 (1%)")
    run_dir = Path(run_dir)
    scalars = read_scalars(run_dir)
    name = _eval_name(scalars, eval_name)
    folders = list(saved_folders) if saved_folders is not None else saved_loras(run_dir)
    return choose(scalars, name, folders, tolerance)


def _eval_name(scalars: RunScalars, wanted: str | None) -> str:
    names = scalars.eval_names()
    if wanted is not None:
        wanted = wanted.removesuffix("/loss")
        if wanted not in names:
            found = ", ".join(names) or "none"
            raise ConfigError(f"no `{wanted}/loss` in {scalars.run_dir} (eval datasets found: {found})",
                              "pass --eval-name with one of the names found" if names else FIX_NO_EVAL)
        return wanted
    if not names:
        tags = ", ".join(sorted(scalars.tags)) or "no scalars at all"
        raise PistachioError(f"no eval loss in the TensorBoard events of {scalars.run_dir} ({tags})", FIX_NO_EVAL)
    if len(names) > 1:
        raise ConfigError(f"{len(names)} eval datasets in {scalars.run_dir}: {', '.join(names)}",
                          "choose one with --eval-name NAME")
    return names[0]


def _epoch_end_steps(scalars: RunScalars, eval_points: list[Point]) -> dict[int, int]:
    """epoch N -> step of the eval made at the end of epoch N.

    DiffusionPipe logs train/epoch_loss (x = epoch) right after the epoch-end eval of the same loop iteration, so
    that eval is the last one written before it, provided no later step's train loss was written in between.
    """
    train = scalars.series(TRAIN_LOSS)
    by_time = sorted(eval_points, key=lambda p: p.wall_time)
    ends: dict[int, int] = {}
    for epoch_point in scalars.series(EPOCH_LOSS):
        before = [p for p in by_time if p.wall_time <= epoch_point.wall_time]
        if not before:
            continue
        last_eval = before[-1]
        last_train_step = max((p.step for p in train if p.wall_time <= epoch_point.wall_time), default=0)
        if last_eval.step >= last_train_step:
            ends[epoch_point.step] = last_eval.step
    return ends


def _map_checkpoints(scalars: RunScalars, eval_points: list[Point], folders: list[str], notes: list[str]) -> dict:
    steps_with_eval = {p.step for p in eval_points}
    epoch_ends: dict[int, int] | None = None
    mapped: dict[int, str] = {}
    unmapped: list[str] = []
    for folder in folders:
        match = CHECKPOINT_DIR_RE.match(folder)
        if not match:
            continue
        kind, number = match.group(1), int(match.group(2))
        if kind == "step":
            step = number
        else:
            if epoch_ends is None:
                epoch_ends = _epoch_end_steps(scalars, eval_points)
            step = epoch_ends.get(number, -1)
        if step in steps_with_eval and step > 0:
            if kind == "step" or step not in mapped:  # stepS and epochN at the same step hold the same weights
                mapped[step] = folder
        else:
            unmapped.append(folder)
    if unmapped:
        notes.append(f"no eval loss for saved folder(s) {', '.join(unmapped)}: they are not considered")
    return mapped


def choose(scalars: RunScalars, eval_name: str, folders: list[str], tolerance: float = DEFAULT_TOLERANCE) -> Selection:
    """The selection rule on already-read scalars (see the module docstring)."""
    notes: list[str] = []
    warnings: list[str] = []
    all_points = scalars.series(f"{eval_name}/loss")
    points = _finite_points(scalars, eval_name, all_points, warnings)
    checkpoints = _candidates(scalars, points, folders, notes)

    smoothed = smooth([p.value for p in points])
    noise = noise_scale([p.value for p in points])
    index = {p.step: i for i, p in enumerate(points)}
    cand = sorted(checkpoints)
    s = [smoothed[index[step]] for step in cand]
    best = min(range(len(cand)), key=lambda i: (s[i], i))
    min_s = s[best]
    slack = tolerance * abs(min_s)
    earliest = next(i for i in range(len(cand)) if s[i] <= min_s + slack)
    verdict, chosen, message, undertrained_until, overtrained_from = _judge(
        cand, s, best=best, earliest=earliest, slack=slack, noise=noise, tolerance=tolerance, warnings=warnings)

    step = cand[chosen]
    point = points[index[step]]
    rows = [
        Row(p.step, p.value, smoothed[index[p.step]] if p.step in index else math.nan, p.step in checkpoints)
        for p in all_points
    ]
    return Selection(
        step=step,
        checkpoint_dir=scalars.run_dir / checkpoints[step],
        eval_loss=point.value,
        smoothed=smoothed[index[step]],
        verdict=verdict,
        message=message,
        rows=rows,
        eval_name=eval_name,
        checkpoint_name=checkpoints[step],
        minimum_step=cand[best],
        tolerance=tolerance,
        noise=noise,
        run_dir=scalars.run_dir,
        checkpoints={k: checkpoints[k] for k in cand},
        train=[(p.step, p.value) for p in scalars.series(TRAIN_LOSS) if math.isfinite(p.value)],
        undertrained_until=undertrained_until,
        overtrained_from=overtrained_from,
        notes=notes,
        warnings=warnings,
    )


def _finite_points(scalars: RunScalars, eval_name: str, all_points: list[Point], warnings: list[str]) -> list[Point]:
    """The eval losses that are numbers (a NaN/inf is a warning: training diverged there); none is an error."""
    points = [p for p in all_points if math.isfinite(p.value)]
    bad = [p.step for p in all_points if not math.isfinite(p.value)]
    if bad:
        warnings.append(f"eval loss is NaN/inf at {len(bad)} step(s) from step {bad[0]}: training diverged there")
    if not points:
        raise PistachioError(f"`{eval_name}/loss` in {scalars.run_dir} has no finite value",
                             "lower the learning rate and train again")
    return points


def _candidates(scalars: RunScalars, points: list[Point], folders: list[str], notes: list[str]) -> dict[int, str]:
    """Eval step -> saved LoRA folder, for the eval points that have one; none is an error."""
    checkpoints = _map_checkpoints(scalars, points, folders, notes)
    if not checkpoints:
        raise PistachioError(
            f"none of the {len(points)} eval losses of {scalars.run_dir} has a saved LoRA "
            f"(eval steps {_steps_text([p.step for p in points])}; saved folders: {', '.join(folders) or 'none'})",
            "set eval_every_n_steps equal to save_every_n_steps (and leave x_axis_examples off), then train again",
        )
    eval_steps_after_0 = [p.step for p in points if p.step > 0]
    if len(checkpoints) < len(eval_steps_after_0):
        notes.append(
            f"eval and save cadences differ: {len(checkpoints)} of {len(eval_steps_after_0)} eval points have a saved "
            "LoRA; only those are candidates (set eval_every_n_steps = save_every_n_steps to have them all)"
        )
    return checkpoints


def _judge(cand: list[int], s: list[float], *, best: int, earliest: int, slack: float, noise: float,
           tolerance: float, warnings: list[str]) -> tuple[Verdict, int, str, int | None, int | None]:
    """The verdict on the smoothed curve `s` over the candidate steps `cand`: (verdict, chosen index, message,
    undertrained until step, overtrained from step)."""
    min_s = s[best]
    rise_threshold = max(3 * noise, slack)
    window = min(len(cand), max(3, len(cand) // 4))
    drop = s[-window] - s[-1]
    verdict: Verdict
    undertrained_until: int | None = cand[earliest]
    overtrained_from: int | None = None
    if len(cand) < 3:
        verdict, chosen = "inconclusive", earliest
        message = (f"only {len(cand)} eval point(s) with a saved LoRA: too few to judge the trend; "
                   f"chose step {cand[chosen]}, the lowest eval loss")
    elif best == len(cand) - 1 and drop > max(2 * noise, slack):
        verdict, chosen = "undertrained", len(cand) - 1
        undertrained_until = cand[-1]
        message = (f"eval loss is still falling at the last saved step {cand[-1]} "
                   f"({_pct(drop, s[-window])} over the last {window} evals); chose the last step — "
                   "train longer (more epochs or steps) for a better LoRA")
        warnings.append(f"the run ended while the eval loss was still falling: step {cand[-1]} is the best there "
                        "is, not a converged LoRA")
    elif s[-1] - min_s > rise_threshold:
        verdict, chosen = "overtrained", earliest
        overtrained_from = next(cand[i] for i in range(best + 1, len(cand)) if s[i] - min_s > rise_threshold)
        message = (f"eval loss bottoms out at step {cand[best]} ({min_s:.4g}) and rises "
                   f"{_pct(s[-1] - min_s, min_s)} by step {cand[-1]}; chose step {cand[chosen]} — later checkpoints "
                   "are worse, next time train fewer steps or lower the learning rate")
    else:
        verdict, chosen = "converged", earliest
        message = f"eval loss reaches its minimum at step {cand[best]} ({min_s:.4g})"
        message += (f"; chose step {cand[chosen]}, the earliest within {tolerance:.1%} of it" if chosen != best
                    else f"; chose step {cand[chosen]}")

    return verdict, chosen, message, undertrained_until, overtrained_from


def _pct(delta: float, base: float) -> str:
    return f"{delta / abs(base):.1%}" if base else f"{delta:.4g}"


def _steps_text(steps: list[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 8 else f"{steps[0]}, {steps[1]}, … {steps[-1]}"


def plot_selection(selection: Selection, path: Path) -> Path:
    """Write the loss plot (PNG): see lossplot.py."""
    from .lossplot import plot_losses

    return plot_losses(selection, Path(path))
