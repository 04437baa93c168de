"""What `campaign run` shows while it runs: a live table (job, stage, step/total, loss, $ against its allowance)
on a terminal, refreshed from the state store the jobs write to; and afterwards each job's warnings, taken from
its log, instead of a log path nobody opens."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WARNING = re.compile(r"^\s*(warning:|note:)\s*(.+)$", re.IGNORECASE)


def live_table(campaign: str, cloud: str) -> Any:
    from rich.table import Table

    from ..campaign.records import CampaignRecords
    from ..dashboard.data import DashboardData
    from ..money import usd

    now = DashboardData().now()
    running = {r["name"]: r for r in now["running"] if r["campaign"] == campaign}
    records = CampaignRecords()
    try:
        rows = records.jobs(campaign, cloud)
    finally:
        records.close()
    table = Table(title=f"campaign {campaign}", title_justify="left")
    for col in ("job", "status", "stage", "step", "loss", "eval", "$ / allowance", "GPU"):
        table.add_column(col, justify="right" if col in ("step", "loss", "eval", "$ / allowance") else "left")
    for r in rows:
        live = running.get(r["job"], {})
        step = f"{live['step']}/{live['total']}" if live.get("total") else ""
        spent = live.get("spent_usd")
        allowance = r.get("allowance_usd")
        money = (usd(spent, like=allowance or spent or 0) if spent is not None else "") + (
            f" / {usd(allowance, like=allowance)}" if allowance else "")
        table.add_row(r["job"], r["status"], live.get("stage", ""), step,
                      f"{live['loss']:.4f}" if live.get("loss") is not None else "",
                      f"{live['eval_loss']:.4f}" if live.get("eval_loss") is not None else "",
                      money, r.get("gpu_class") or "")
    return table


@contextmanager
def watching(console: Any, campaign: str, cloud: str) -> Iterator[Callable[[str], None]]:
    """A `say` for the executor: on a terminal its lines print above a live table; piped, plain lines."""
    if not console.is_terminal:
        yield lambda m: console.print(f"  {m}")
        return
    from rich.live import Live

    stop = threading.Event()
    with Live(live_table(campaign, cloud), console=console, refresh_per_second=2, transient=False) as live:

        def refresh() -> None:
            while not stop.wait(1.0):
                try:
                    live.update(live_table(campaign, cloud))
                except Exception:  # a busy database this second: the next second shows it
                    continue

        thread = threading.Thread(target=refresh, name="campaign-live", daemon=True)
        thread.start()
        try:
            yield lambda m: live.console.print(f"  {m}")
        finally:
            stop.set()
            thread.join(timeout=5)
            live.update(live_table(campaign, cloud))


def job_warnings(log_path: str | None) -> list[str]:
    """The distinct warning/note lines of a job's log (its last attempt's first)."""
    if not log_path or not Path(log_path).is_file():
        return []
    seen: dict[str, None] = {}
    for line in Path(log_path).read_text(errors="replace").splitlines():
        m = WARNING.match(line)
        if m:
            seen.setdefault(f"{m.group(1).lower()} {m.group(2).strip()}", None)
    return list(seen)
