"""A job's report: runs/<job>/<timestamp>/report.md, loss.png, configs/ and captions/.

Everything written goes through `credentials.redact`, key-like assignments in config copies are blanked, and a
final pass over every written file refuses the report (and removes it) if anything that looks like a key remains.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..credentials import known_secrets, redact
from ..errors import PistachioError
from ..money import signed_usd, usd
from ..selection.choose import Selection, plot_selection

STAMP_FORMAT = "%Y%m%d_%H-%M-%S"
SAMPLES_SHEET = "samples.png"  # the contact sheet, beside loss.png
# `wandb_api_key = "abc"`, `api_key: abc`, `HF_TOKEN=abc`: the value of anything named like a credential
KEY_ASSIGNMENT = re.compile(
    r"""(?im)^([ \t]*["']?[\w.-]*(?:api[_-]?key|token|secret|password)["']?[ \t]*[=:][ \t]*)(["']?)([^"'\s#,}]+)(\2)"""
)
# token shapes of RunPod (rpa_…) and Hugging Face (hf_…); a wandb key (40 hex) looks like a git commit, so it is
# caught by value (credentials.known_secrets) instead
KEY_SHAPES = re.compile(r"\b(?:rpa_[A-Za-z0-9]{20,}|hf_[A-Za-z0-9]{30,})\b")


@dataclass
class ReportData:
    job: str
    character: str
    trigger: str
    gpu_class: str  # the class actually rented (fallback may have changed it)
    pod_id: str | None = None
    gpu_requested: str | None = None  # shown when it differs from gpu_class
    selection: Selection | None = None
    configs: list[Path] = field(default_factory=list)  # rendered training / dataset / eval TOMLs, copied in
    captions_dir: Path | None = None  # the captions as downloaded (.txt next to image names)
    cost_estimated_usd: float | None = None
    cost_billed_usd: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds, in pipeline order
    lock: dict[str, Any] = field(default_factory=dict)
    lora_path: str | None = None  # where the LoRA was installed (local path or host:path)
    wandb_url: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None  # names the report folder; now (UTC) when not set
    notes: list[str] = field(default_factory=list)
    # the verify stage: (prompt, seed, kind, without-LoRA file, with-LoRA file) as paths relative to the report,
    # the contact sheet (copied beside loss.png as samples.png), and why there are none when skipped
    samples: list[tuple[str, int, str, str, str]] = field(default_factory=list)
    samples_sheet: Path | None = None
    samples_note: str | None = None


class SecretInReportError(PistachioError):
    """Something that looks like a credential was about to be written into a report."""


def report_dir(dest_dir: Path, data: ReportData) -> Path:
    when = data.finished_at or datetime.now(UTC)
    job = re.sub(r"[^A-Za-z0-9._-]", "_", data.job) or "job"
    return Path(dest_dir) / "runs" / job / when.strftime(STAMP_FORMAT)


def write_report(dest_dir: Path, data: ReportData) -> Path:
    """Write the report under `dest_dir/runs/<job>/<timestamp>/` and return the path of its report.md."""
    folder = report_dir(dest_dir, data)
    folder.mkdir(parents=True, exist_ok=True)
    config_names = [_copy_config(path, folder / "configs") for path in data.configs]
    captions = _copy_captions(data.captions_dir, folder / "captions", data.trigger) if data.captions_dir else None
    plot = plot_selection(data.selection, folder / "loss.png") if data.selection else None
    if data.samples_sheet is not None and Path(data.samples_sheet).is_file():
        shutil.copyfile(data.samples_sheet, folder / SAMPLES_SHEET)
    text = _markdown(data, config_names, captions, plot)
    report = folder / "report.md"
    report.write_text(redact(text))
    _refuse_secrets(folder)
    return report


def _scrub(text: str) -> str:
    text = redact(text)
    return KEY_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(4)}", text)


def _copy_config(path: Path, dest: Path) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / path.name).write_text(_scrub(Path(path).read_text()))
    return path.name


@dataclass
class CaptionSummary:
    count: int
    words_mean: float
    empty: list[str]
    without_trigger: list[str]
    examples: list[tuple[str, str]]


def _copy_captions(source: Path, dest: Path, trigger: str) -> CaptionSummary:
    dest.mkdir(parents=True, exist_ok=True)
    texts = {}
    for path in sorted(Path(source).glob("*.txt")):
        text = redact(path.read_text(errors="replace"))
        (dest / path.name).write_text(text)
        texts[path.name] = text.strip()
    words = [len(t.split()) for t in texts.values()]
    return CaptionSummary(
        count=len(texts),
        words_mean=sum(words) / len(words) if words else 0.0,
        empty=[n for n, t in texts.items() if not t],
        without_trigger=[n for n, t in texts.items() if t and not t.startswith(trigger)],
        examples=list(texts.items())[:5],
    )


def _money(value: float | None) -> str:
    return "—" if value is None else usd(value)


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _markdown(data: ReportData, configs: list[str], captions: CaptionSummary | None, plot: Path | None) -> str:
    gpu = data.gpu_class
    if data.gpu_requested and data.gpu_requested != data.gpu_class:
        gpu += f" (asked for {data.gpu_requested})"
    out = [
        f"# {data.job}: LoRA report",
        "",
        f"- Character: {data.character}",
        f"- Trigger word: `{data.trigger}`",
        f"- GPU class rented: {gpu}",
        f"- Pod: {data.pod_id or '—'}",
        f"- Installed LoRA: {data.lora_path or '— (not installed)'}",
    ]
    if data.started_at:
        out.append(f"- Started: {data.started_at.isoformat(timespec='seconds')}")
    if data.finished_at:
        out.append(f"- Finished: {data.finished_at.isoformat(timespec='seconds')}")
    if data.wandb_url:
        out.append(f"- wandb: {data.wandb_url}")
    out += [f"- Note: {note}" for note in data.notes]

    out += ["", "## Checkpoint selection", ""]
    sel = data.selection
    if sel is None:
        out.append("No selection was made (training did not finish).")
    else:
        out += [
            f"- Chosen: **step {sel.step}** (`{sel.checkpoint_name}`), eval loss {sel.eval_loss:.5f} "
            f"(smoothed {sel.smoothed:.5f})",
            f"- Verdict: **{sel.verdict}**: {sel.message}",
            f"- Eval dataset: `{sel.eval_name}`; tolerance {sel.tolerance:.1%}; noise σ {sel.noise:.5f}",
        ]
        out += [f"- Warning: {w}" for w in sel.warnings] + [f"- Note: {n}" for n in sel.notes]
        if plot:
            out += ["", f"![train and eval loss]({plot.name})"]
        out += ["", "| step | eval loss | smoothed | LoRA |", "|---:|---:|---:|---|"]
        for row in sel.rows:
            folder = sel.checkpoints.get(row.step, "") if row.has_lora else "—"
            mark = " ← chosen" if row.step == sel.step else ""
            smoothed = f"{row.smoothed:.5f}" if math.isfinite(row.smoothed) else "—"
            out.append(f"| {row.step} | {row.eval_loss:.5f} | {smoothed} | {folder}{mark} |")

    out += _samples_markdown(data)

    out += ["", "## Cost", "", "| estimated | billed | difference |", "|---:|---:|---:|"]
    diff = (
        signed_usd(data.cost_billed_usd - data.cost_estimated_usd,
                   like=max(data.cost_billed_usd, data.cost_estimated_usd))
        if data.cost_billed_usd is not None and data.cost_estimated_usd is not None
        else "—"
    )
    out.append(f"| {_money(data.cost_estimated_usd)} | {_money(data.cost_billed_usd)} | {diff} |")

    out += ["", "## Timings", ""]
    if data.stage_seconds:
        out += ["| stage | time |", "|---|---:|"]
        out += [f"| {stage} | {duration(sec)} |" for stage, sec in data.stage_seconds.items()]
        out.append(f"| **total** | {duration(sum(data.stage_seconds.values()))} |")
    else:
        out.append("No stage timings recorded.")

    out += ["", "## Captions", ""]
    if captions is None:
        out.append("No captions recorded.")
    else:
        out.append(f"{captions.count} caption(s) in [captions/](captions/), "
                   f"{captions.words_mean:.1f} words on average.")
        if captions.empty:
            out.append(f"Empty: {', '.join(captions.empty)}.")
        if captions.without_trigger:
            out.append(f"Not starting with `{data.trigger}`: {', '.join(captions.without_trigger)}.")
        out += [f"- `{name}`: {text[:200]}" for name, text in captions.examples]

    out += ["", "## Rendered configs", ""]
    out += [f"- [configs/{name}](configs/{name})" for name in configs] or ["None recorded."]

    out += ["", "## Environment lock", ""]
    out += ["```json", json.dumps(data.lock, indent=2, sort_keys=True, default=str), "```"] if data.lock else [
        "None recorded."
    ]
    return "\n".join(out) + "\n"


def _samples_markdown(data: ReportData) -> list[str]:
    if not data.samples:
        return ["", "## Samples", "", f"No samples: {data.samples_note or 'the verify stage did not run'}."]
    out = ["", "## Samples", ""]
    out += [f"Each prompt rendered in ComfyUI with the LoRA and, with the same seed, without it. "
            f"Contact sheet: [{SAMPLES_SHEET}]({SAMPLES_SHEET}).", "",
            "| prompt | seed | without the LoRA | with the LoRA |", "|---|---:|---|---|"]
    for prompt, seed, kind, without, with_lora in data.samples:
        label = prompt.replace("|", "/") + (" (clip)" if kind == "clip" else "")
        out.append(f"| {label} | {seed} | ![without]({without}) | ![with]({with_lora}) |")
    return out


def _refuse_secrets(folder: Path) -> None:
    secrets = known_secrets()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".png"):
        text = path.read_text(errors="replace")
        found = [s for s in secrets if s in text]
        assignment = next((m for m in KEY_ASSIGNMENT.finditer(text) if m.group(3)), None)
        shape = KEY_SHAPES.search(text)
        if found or assignment or shape:
            shutil.rmtree(folder)
            what = "a known secret" if found else "something that looks like a key"
            raise SecretInReportError(
                f"the report would contain {what} in {path.relative_to(folder)}; nothing was written",
                "keep credentials in the environment or the credentials file, not in configs or captions",
            )
