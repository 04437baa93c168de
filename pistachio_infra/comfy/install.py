"""Apply a plan on its target: clone node packs and install their requirements, download models with progress and
hash checks (all done by agent.py next to ComfyUI), then restart ComfyUI when new nodes need loading."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .plan import Plan


@dataclass
class InstallReport:
    packs: list[dict[str, Any]] = field(default_factory=list)  # agent "pack" events
    models: list[dict[str, Any]] = field(default_factory=list)  # agent "model" events
    failures: list[dict[str, Any]] = field(default_factory=list)  # agent "error" events
    restart: str = ""
    seconds: float = 0.0
    exit_code: int = 0

    @property
    def downloaded_bytes(self) -> int:
        return sum(m.get("size", 0) for m in self.models if m.get("status") == "downloaded")


def install(
    plan: Plan,
    target: Any,
    *,
    hub_endpoint: str,
    show_progress: bool = True,
    on_line: Callable[[str], None] | None = None,
) -> InstallReport:
    report = InstallReport()
    t0 = time.monotonic()
    if plan.nothing_to_do:
        report.seconds = time.monotonic() - t0
        return report
    agent_plan = plan.agent_plan(target.comfy_dir, hub_endpoint, getattr(target, "python", "python3"))
    progress: Any = None
    tasks: dict[str, Any] = {}
    if show_progress:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        progress.start()

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress" and progress is not None:
            dest = event["dest"]
            if dest not in tasks:
                tasks[dest] = progress.add_task(dest.rsplit("/", 1)[-1], total=event.get("total"))
            progress.update(tasks[dest], completed=event["done"], total=event.get("total"))
        elif kind == "pack":
            report.packs.append(event)
            if on_line:
                on_line(f"node pack {event['dest']}: {event['status']}")
        elif kind == "model":
            report.models.append(event)
        elif kind == "error":
            report.failures.append(event)
            if on_line:
                on_line(f"failed: {event['item']}: {event['message']}")

    try:
        report.exit_code = target.apply(agent_plan, on_event, on_line)
    finally:
        if progress is not None:
            progress.stop()
    if any(p.get("status") == "installed" for p in report.packs):
        report.restart = target.restart()
    report.seconds = time.monotonic() - t0
    return report
