"""The stage list and the recorder that makes every stage resumable.

Each stage records start, end and result (a small JSON dict) in the state store. A rerun skips a stage that is done;
a stage that works on the pod (`POD_STAGES`) counts as done only on the pod that did it, so after the pod is lost
(preempted, terminated by its watchdog) it runs again on the next pod. Every stage is idempotent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..state import StageRecord, Store

STAGES = (
    "preflight", "provision", "bootstrap", "upload", "caption", "split", "render", "train", "select", "harvest",
    "install", "report", "teardown",
)  # fmt: skip
# Work that lives on the pod: redone on a new pod (cheaply: each step skips what is already there).
POD_STAGES = frozenset({"provision", "bootstrap", "upload", "split", "render"})
# Stages whose result is kept on this machine: once done, a new pod does not redo them.
LOCAL_STAGES = frozenset({"preflight", "caption", "select", "harvest", "install", "report"})

# "point[:seconds]" or "point:@file": hold the run at that point for the seconds, or until the file exists. A point
# is a stage name (right after it is recorded as started) or "train-launched" (right after the trainer started).
PAUSE_ENV = "PISTACHIO_PAUSE_AT"


def pause(point: str) -> None:
    """A debugging (and test) hook: hold the run at one point so it can be interrupted there."""
    raw = os.environ.get(PAUSE_ENV, "")
    name, _, until = raw.partition(":")
    if name != point:
        return
    if until.startswith("@"):
        release, give_up = Path(until[1:]), time.monotonic() + 600
        while not release.exists() and time.monotonic() < give_up:
            time.sleep(0.05)
    else:
        time.sleep(float(until or 30))


class Stages:
    def __init__(self, store: Store, job_id: int, say: Callable[[str], None]) -> None:
        self.store = store
        self.job_id = job_id
        self.say = say

    def record(self, stage: str) -> StageRecord | None:
        return next((r for r in self.store.stages(self.job_id) if r.stage == stage), None)

    def result(self, stage: str) -> dict[str, Any]:
        rec = self.record(stage)
        return dict(rec.result or {}) if rec and rec.status == "done" else {}

    def is_done(self, stage: str, pod: str | None = None) -> bool:
        rec = self.record(stage)
        if rec is None or rec.status != "done":
            return False
        if stage in POD_STAGES:
            return pod is not None and (rec.result or {}).get("pod") == pod
        return True

    def run(self, stage: str, fn: Callable[[], dict[str, Any] | None], *, pod: str | None = None) -> dict[str, Any]:
        """Run `fn` as `stage` unless it is already done (then return its recorded result)."""
        if self.is_done(stage, pod):
            self.say(f"[dim]✓ {stage}: done earlier[/dim]")
            return self.result(stage)
        self.start(stage)
        try:
            result = dict(fn() or {})
        except BaseException as exc:
            self.store.stage_failed(self.job_id, stage, _one_line(exc))
            raise
        if pod is not None:
            result["pod"] = pod
        self.store.stage_done(self.job_id, stage, result)
        return result

    def start(self, stage: str) -> None:
        self.store.stage_started(self.job_id, stage)
        self.store.add_event(self.job_id, "stage", {"stage": stage})
        pause(stage)

    def done(self, stage: str, result: dict[str, Any] | None = None) -> None:
        self.store.stage_done(self.job_id, stage, result or {})

    def failed(self, stage: str, exc: BaseException) -> None:
        self.store.stage_failed(self.job_id, stage, _one_line(exc))

    def seconds(self) -> dict[str, float]:
        """Wall seconds of each finished stage (its last attempt), in pipeline order."""
        recs = {r.stage: r for r in self.store.stages(self.job_id)}
        out = {}
        for stage in STAGES:
            rec = recs.get(stage)
            if rec is not None and rec.finished_at is not None:
                out[stage] = max(0.0, rec.finished_at - rec.started_at)
        return out


def _one_line(exc: BaseException) -> str:
    from ..credentials import redact
    from ..errors import PistachioError

    if isinstance(exc, PistachioError):
        return redact(exc.one_line())
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return redact(f"{type(exc).__name__}: {exc}")[:500]
