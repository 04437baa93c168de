"""The typed result of every stage and the event kinds of a run, serialised in one place.

A stage returns one frozen dataclass; the recorder (stages.py) stores it as JSON with `dump` and reads it back with
`load`. The JSON keys are the field names, so records written before these classes existed still load (and the
campaign's cost model, which reads `train.steps` / `provision.gpu_class` from the store, keeps working).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar


class Event(StrEnum):
    """Kinds of the state store's job events (`Store.add_event`)."""

    STAGE = "stage"
    POD_LOST = "pod_lost"
    LOCK = "lock"
    TRAIN_LAUNCH = "train_launch"
    TRAIN_RUN = "train_run"
    TRAIN_REATTACH = "train_reattach"
    RECONNECTED = "reconnected"
    ESTIMATE = "estimate"
    SUPERVISOR = "supervisor"
    VERIFY_PLAN = "verify_plan"  # where the samples render and what that adds, decided before renting
    ALLOWED_DRIFT = "allowed_drift"


@dataclass(frozen=True, kw_only=True)
class StageResult:
    pod: str | None = None  # set by the recorder for the stages that count only on the pod that did them


@dataclass(frozen=True, kw_only=True)
class PreflightDone(StageResult):
    images: int = 0
    train: int = 0
    eval: int = 0
    classes: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ProvisionDone(StageResult):
    pod_id: str | None = None
    gpu_class: str | None = None
    data_center: str | None = None
    cost_per_hr: float = 0.0
    reused: bool = False
    volume: str | None = None


@dataclass(frozen=True, kw_only=True)
class BootstrapDone(StageResult):
    seconds: float = 0.0
    steps: tuple[Any, ...] = ()  # bootstrap.BootstrapReport.steps (JSON records)
    models: tuple[str, ...] = ()
    lock: Any = None  # lock.rebuild.current_lock_summary (a JSON document, shown as-is in the report)


@dataclass(frozen=True, kw_only=True)
class UploadDone(StageResult):
    images: int = 0
    user_captions: int = 0
    sent: int = 0
    bytes: int = 0


@dataclass(frozen=True, kw_only=True)
class CaptionDone(StageResult):
    captioned: int = 0
    user_captions: int = 0
    dropped: tuple[str, ...] = ()
    folder: str | None = None


@dataclass(frozen=True, kw_only=True)
class SplitDone(StageResult):
    train: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RenderDone(StageResult):
    gpu_class: str = ""
    steps: int = 0
    every: int = 0


@dataclass(frozen=True, kw_only=True)
class TrainDone(StageResult):
    run: str = ""
    steps: int = 0
    saved: tuple[str, ...] = ()
    wandb_url: str | None = None
    resumed_at: int | None = None


@dataclass(frozen=True, kw_only=True)
class SelectDone(StageResult):
    step: int = 0
    checkpoint: str = ""
    verdict: str = ""
    eval_loss: float | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HarvestDone(StageResult):
    path: str = ""
    sha256: str = ""
    checkpoint: str = ""
    tensors: int = 0


@dataclass(frozen=True, kw_only=True)
class TeardownDone(StageResult):
    pods: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class InstallDone(StageResult):
    installed: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class VerifyDone(StageResult):
    where: str = "skipped"  # "comfyui" | "skipped"
    reason: str = ""
    url: str | None = None
    folder: str | None = None  # <run folder>/samples: the files, samples.json and the contact sheet
    sheet: str | None = None  # the contact sheet PNG (also copied beside loss.png)
    samples: tuple[Any, ...] = ()  # verify.render.Rendered records (JSON)
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ReportDone(StageResult):
    path: str = ""
    billed_usd: float = 0.0


@dataclass(frozen=True, kw_only=True)
class PublishDone(StageResult):
    repo: str | None = None  # None: no durable destination configured (the LoRA lives on this machine only)
    commit: str | None = None


R = TypeVar("R", bound=StageResult)


def dump(result: StageResult) -> dict[str, Any]:
    """The JSON record of a result (what the state store holds)."""
    return dataclasses.asdict(result)


def load(kind: type[R], raw: dict[str, Any] | None) -> R:
    """A result from its JSON record: unknown keys are ignored, JSON lists become the tuples the class declares."""
    raw = raw or {}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name in raw:
            value = raw[f.name]
            values[f.name] = tuple(value) if isinstance(value, list) and str(f.type).startswith("tuple") else value
    return kind(**values)
