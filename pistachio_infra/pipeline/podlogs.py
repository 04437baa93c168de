"""Logs outlive the pod: before teardown (and after a failure) every detached job's log on the pod (bootstrap,
caption, train, …, and the watchdog's) is copied into runs/<job>/<stamp>/logs/<name>.log, secrets redacted.
`pistachio-infra logs JOB` reads them after the pod is gone."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

LOGS = "logs"
MAX_LOG_BYTES = 20_000_000  # the tail of a longer log


def logs_dir(run_folder: Path) -> Path:
    return Path(run_folder) / LOGS


def save_pod_logs(remote: Any, run_folder: Path, secrets: list[str] | None = None) -> list[Path]:
    """Copy every job log of the pod into the run folder, newest last; returns the files written."""
    from ..credentials import redact
    from ..pods.watchdog import files_for

    jobs_dir = str(remote.jobs_dir)
    listing = remote.run(f"ls -1tr {shlex.quote(jobs_dir)} 2>/dev/null", check=False).stdout.split()
    sources = [(name, f"{jobs_dir}/{name}/log") for name in listing if name != "watchdog"]
    sources.append(("watchdog", str(files_for(remote).log)))
    folder = logs_dir(run_folder)
    written: list[Path] = []
    for name, path in sources:
        raw = remote.exec(f"tail -c {MAX_LOG_BYTES} {shlex.quote(path)} 2>/dev/null", timeout=120)
        if not raw.stdout:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.log"
        target.write_text(redact(raw.stdout.decode("utf-8", "replace"), secrets))
        written.append(target)
    return written


def keep_logs(ctx: Any) -> list[Path]:
    """The run's pod logs into its run folder; best effort (a dead pod has none to give)."""
    session = getattr(ctx, "session", None)
    if session is None:
        return []
    try:
        written = save_pod_logs(session.remote, ctx.run_folder)
    except Exception as exc:  # a pod that is already gone must not stop its teardown
        ctx.say(f"could not copy the pod's logs ({exc})")
        return []
    if written:
        ctx.say(f"logs kept in {logs_dir(ctx.run_folder)} ({', '.join(p.stem for p in written)})")
    ctx.saved_logs = written
    return written


def failed_log(ctx: Any) -> Path | None:
    """The log a failure most likely wrote to: the most recently started job's (not the watchdog's)."""
    logs = [p for p in getattr(ctx, "saved_logs", []) if p.stem != "watchdog"]
    return logs[-1] if logs else None
