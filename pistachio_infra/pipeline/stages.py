"""The recorder that makes every stage resumable (the stages and their order: table.py).

Each stage records start, end and its typed result (results.py, stored as JSON) in the state store. A rerun skips a
stage that is done; a stage that sets up the pod (`Row.per_pod`) counts as done only on the pod that did it, so after
the pod is lost (preempted, terminated by its watchdog) it runs again on the next pod. Every stage is idempotent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from ..settings import get_settings
from ..state import StageRecord, Store
from .results import Event, R, StageResult, dump, load

# "point[:seconds]" or "point:@file": hold the run at that point for the seconds, or until the file exists. A point
# is a stage name (right after it is recorded as started) or "train-launched" (right after the trainer started).
PAUSE_ENV = "PISTACHIO_PAUSE_AT"


def pause(point: str) -> None:
    """A debugging (and test) hook: hold the run at one point so it can be interrupted there."""
    raw = get_settings().pause_at
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
        self.pod_holds: set[str] = set()  # stages the pod's supervisor runs: it holds at their pause points

    def record(self, stage: str) -> StageRecord | None:
        return next((r for r in self.store.stages(self.job_id) if r.stage == stage), None)

    def get(self, kind: type[R]) -> R | None:
        """The recorded result of the stage that returns `kind`, when that stage is done."""
        from .table import row_for

        rec = self.record(row_for(kind).name)
        return load(kind, rec.result) if rec is not None and rec.status == "done" else None

    def is_done(self, stage: str, pod: str | None = None) -> bool:
        from .table import row

        rec = self.record(stage)
        if rec is None or rec.status != "done":
            return False
        if row(stage).per_pod:
            return pod is not None and (rec.result or {}).get("pod") == pod
        return True

    def run(self, stage: str, fn: Callable[[], StageResult], *, pod: str | None = None) -> StageResult:
        """Run `fn` as `stage` unless it is already done (then return its recorded result)."""
        from .table import row

        kind = row(stage).result
        if self.is_done(stage, pod):
            self.say(f"[dim]✓ {stage}: done earlier[/dim]")
            return load(kind, self.record(stage).result)  # type: ignore[union-attr]
        self.start(stage)
        try:
            result = fn()
        except BaseException as exc:
            self.store.stage_failed(self.job_id, stage, _one_line(exc))
            raise
        if pod is not None:
            result = dataclasses.replace(result, pod=pod)
        self.done(stage, result)
        return result

    def start(self, stage: str) -> None:
        self.store.stage_started(self.job_id, stage)
        self.store.add_event(self.job_id, Event.STAGE, {"stage": stage})
        if stage not in self.pod_holds:
            pause(stage)

    def done(self, stage: str, result: StageResult) -> None:
        self.store.stage_done(self.job_id, stage, dump(result))

    def failed(self, stage: str, exc: BaseException) -> None:
        self.store.stage_failed(self.job_id, stage, _one_line(exc))

    def seconds(self) -> dict[str, float]:
        """Wall seconds of each finished stage (its last attempt), in pipeline order."""
        from .table import TABLE

        recs = {r.stage: r for r in self.store.stages(self.job_id)}
        out = {}
        for stage in (r.name for r in TABLE):
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
