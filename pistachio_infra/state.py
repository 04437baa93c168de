"""The SQLite store: pods, pinned host keys, jobs, stages, events and the billing ledger.

Every pod is recorded *before* it is created (status 'intent'), so a crash between the API call and the next write
still leaves a trace that `reap` and resume can follow (pods are created with unique names for that reason).
One connection per Store; each write is its own transaction; WAL lets concurrent commands read while one writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import state_db_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS pods (
    name TEXT PRIMARY KEY,              -- unique per create attempt
    pod_id TEXT UNIQUE,                 -- RunPod id once known
    cloud TEXT NOT NULL,                -- 'runpod' or 'sandbox'
    job_id INTEGER,
    purpose TEXT NOT NULL DEFAULT 'job',  -- job | up | comfyui | rebuild
    gpu_class TEXT, gpu_type_id TEXT, data_center_id TEXT,
    cost_per_hr REAL,
    ssh_host TEXT, ssh_port INTEGER,
    status TEXT NOT NULL,               -- intent | created | ready | gone
    watchdog_deadline REAL,             -- epoch seconds: max runtime enforced on the pod
    created_at REAL NOT NULL, ready_at REAL, gone_at REAL, gone_reason TEXT
);
CREATE TABLE IF NOT EXISTS host_keys (
    pod_id TEXT PRIMARY KEY, key_type TEXT NOT NULL, key_b64 TEXT NOT NULL, pinned_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL, cloud TEXT NOT NULL, campaign TEXT,
    project TEXT,                       -- the project folder (resolved): a job's identity is (project, name)
    spec_json TEXT NOT NULL, status TEXT NOT NULL,   -- running | done | failed | cancelled
    created_at REAL NOT NULL, finished_at REAL, result_json TEXT
);
CREATE TABLE IF NOT EXISTS stages (
    job_id INTEGER NOT NULL, stage TEXT NOT NULL,
    status TEXT NOT NULL,               -- running | done | failed
    started_at REAL NOT NULL, finished_at REAL, result_json TEXT, error TEXT,
    PRIMARY KEY (job_id, stage)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER, at REAL NOT NULL, kind TEXT NOT NULL, payload_json TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    pod_id TEXT PRIMARY KEY, job_id INTEGER, campaign TEXT,
    estimated_usd REAL, billed_usd REAL, billed_seconds REAL, updated_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class PodRecord:
    name: str
    pod_id: str | None
    cloud: str
    job_id: int | None
    purpose: str
    gpu_class: str | None
    gpu_type_id: str | None
    data_center_id: str | None
    cost_per_hr: float | None
    ssh_host: str | None
    ssh_port: int | None
    status: str
    watchdog_deadline: float | None
    created_at: float
    ready_at: float | None
    gone_at: float | None
    gone_reason: str | None


@dataclass(frozen=True)
class StageRecord:
    job_id: int
    stage: str
    status: str
    started_at: float
    finished_at: float | None
    result: dict[str, Any] | None
    error: str | None


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        _migrate(self._db)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- pods -------------------------------------------------------------------------------------------

    def record_pod_intent(
        self,
        name: str,
        *,
        cloud: str,
        purpose: str = "job",
        job_id: int | None = None,
        gpu_class: str | None = None,
        gpu_type_id: str | None = None,
        data_center_id: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO pods (name, cloud, purpose, job_id, gpu_class, gpu_type_id, data_center_id,"
            " status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?)",
            (name, cloud, purpose, job_id, gpu_class, gpu_type_id, data_center_id, time.time()),
        )

    def update_pod(self, name: str, **fields: Any) -> None:
        allowed = {
            "pod_id", "gpu_class", "gpu_type_id", "data_center_id", "cost_per_hr", "ssh_host", "ssh_port",
            "status", "watchdog_deadline", "ready_at", "gone_at", "gone_reason", "job_id",
        }  # fmt: skip
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown pod fields: {sorted(unknown)}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(f"UPDATE pods SET {sets} WHERE name = ?", (*fields.values(), name))

    def mark_pod_gone(self, name: str, reason: str) -> None:
        self._db.execute(
            "UPDATE pods SET status = 'gone', gone_at = ?, gone_reason = ? WHERE name = ? AND status != 'gone'",
            (time.time(), reason, name),
        )

    def pod(self, name_or_id: str) -> PodRecord | None:
        row = self._db.execute(
            "SELECT * FROM pods WHERE name = ? OR pod_id = ? ORDER BY created_at DESC LIMIT 1", (name_or_id, name_or_id)
        ).fetchone()
        return PodRecord(**dict(row)) if row else None

    def pods(self, *, cloud: str | None = None, live_only: bool = False, job_id: int | None = None) -> list[PodRecord]:
        query, args = "SELECT * FROM pods WHERE 1=1", []
        if cloud is not None:
            query += " AND cloud = ?"
            args.append(cloud)
        if live_only:
            query += " AND status != 'gone'"
        if job_id is not None:
            query += " AND job_id = ?"
            args.append(job_id)
        rows = self._db.execute(query + " ORDER BY created_at", args).fetchall()
        return [PodRecord(**dict(r)) for r in rows]

    # --- host keys (trust on first use) -----------------------------------------------------------------

    def host_key(self, pod_id: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT key_type, key_b64 FROM host_keys WHERE pod_id = ?", (pod_id,)).fetchone()
        return (row["key_type"], row["key_b64"]) if row else None

    def pin_host_key(self, pod_id: str, key_type: str, key_b64: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO host_keys (pod_id, key_type, key_b64, pinned_at) VALUES (?, ?, ?, ?)",
            (pod_id, key_type, key_b64, time.time()),
        )

    # --- jobs and stages --------------------------------------------------------------------------------

    def create_job(self, name: str, *, cloud: str, spec: dict[str, Any], campaign: str | None = None,
                   project: str | None = None) -> int:
        cur = self._db.execute(
            "INSERT INTO jobs (name, cloud, campaign, project, spec_json, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'running', ?)",
            (name, cloud, campaign, project, json.dumps(spec, sort_keys=True, default=str), time.time()),
        )
        return int(cur.lastrowid)

    def job(self, job_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job_dict(row) if row else None

    def latest_job(self, name: str, *, cloud: str, campaign: str | None = None,
                   project: str | None = None) -> dict[str, Any] | None:
        """The newest run of job `name` of `project` (two projects may each have a job of the same name)."""
        row = self._db.execute(
            "SELECT * FROM jobs WHERE name = ? AND cloud = ? AND campaign IS ? AND project IS ?"
            " ORDER BY id DESC LIMIT 1",
            (name, cloud, campaign, project),
        ).fetchone()
        return _job_dict(row) if row else None

    def jobs(self, *, campaign: str | None = None) -> list[dict[str, Any]]:
        if campaign is None:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM jobs WHERE campaign = ? ORDER BY id", (campaign,)).fetchall()
        return [_job_dict(r) for r in rows]

    def finish_job(self, job_id: int, status: str, result: dict[str, Any] | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, result_json = ? WHERE id = ?",
            (status, time.time(), json.dumps(result, default=str) if result is not None else None, job_id),
        )

    def stage_started(self, job_id: int, stage: str) -> None:
        self._db.execute(
            "INSERT INTO stages (job_id, stage, status, started_at) VALUES (?, ?, 'running', ?)"
            " ON CONFLICT (job_id, stage) DO UPDATE SET status = 'running', started_at = excluded.started_at,"
            " finished_at = NULL, error = NULL",
            (job_id, stage, time.time()),
        )

    def stage_done(self, job_id: int, stage: str, result: dict[str, Any] | None = None) -> None:
        self._db.execute(
            "UPDATE stages SET status = 'done', finished_at = ?, result_json = ? WHERE job_id = ? AND stage = ?",
            (time.time(), json.dumps(result or {}, default=str), job_id, stage),
        )

    def stage_failed(self, job_id: int, stage: str, error: str) -> None:
        self._db.execute(
            "UPDATE stages SET status = 'failed', finished_at = ?, error = ? WHERE job_id = ? AND stage = ?",
            (time.time(), error, job_id, stage),
        )

    def stages(self, job_id: int) -> list[StageRecord]:
        rows = self._db.execute("SELECT * FROM stages WHERE job_id = ? ORDER BY started_at", (job_id,)).fetchall()
        return [
            StageRecord(
                job_id=r["job_id"],
                stage=r["stage"],
                status=r["status"],
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                result=json.loads(r["result_json"]) if r["result_json"] else None,
                error=r["error"],
            )
            for r in rows
        ]

    # --- events and ledger ------------------------------------------------------------------------------

    def add_event(self, job_id: int | None, kind: str, payload: dict[str, Any] | None = None) -> None:
        self._db.execute(
            "INSERT INTO events (job_id, at, kind, payload_json) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), kind, json.dumps(payload or {}, default=str)),
        )

    def events(self, job_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM events WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()
        return [{"at": r["at"], "kind": r["kind"], **json.loads(r["payload_json"] or "{}")} for r in rows]

    def record_billing(
        self,
        pod_id: str,
        *,
        billed_usd: float,
        billed_seconds: float,
        job_id: int | None = None,
        campaign: str | None = None,
        estimated_usd: float | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO ledger (pod_id, job_id, campaign, estimated_usd, billed_usd, billed_seconds, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pod_id) DO UPDATE SET billed_usd = excluded.billed_usd,"
            " billed_seconds = excluded.billed_seconds, updated_at = excluded.updated_at,"
            " estimated_usd = COALESCE(excluded.estimated_usd, ledger.estimated_usd),"
            " job_id = COALESCE(excluded.job_id, ledger.job_id),"
            " campaign = COALESCE(excluded.campaign, ledger.campaign)",
            (pod_id, job_id, campaign, estimated_usd, billed_usd, billed_seconds, time.time()),
        )

    def ledger(self, *, campaign: str | None = None) -> list[dict[str, Any]]:
        if campaign is None:
            rows = self._db.execute("SELECT * FROM ledger ORDER BY updated_at").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM ledger WHERE campaign = ? ORDER BY updated_at", (campaign,)
            ).fetchall()
        return [dict(r) for r in rows]


def _migrate(db: sqlite3.Connection) -> None:
    """State written before jobs had a project: add the column and fill it from each run's folder
    (<project>/runs/<job>/<stamp>), so old unfinished runs still resume in their own project."""
    columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
    if "project" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if "project" not in {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}:
            db.execute("ALTER TABLE jobs ADD COLUMN project TEXT")
            for row in db.execute("SELECT id, spec_json FROM jobs").fetchall():
                folder = json.loads(row["spec_json"] or "{}").get("run_folder")
                if folder:
                    db.execute("UPDATE jobs SET project = ? WHERE id = ?",
                               (str(Path(folder).parents[2]), row["id"]))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _job_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["spec"] = json.loads(d.pop("spec_json"))
    raw = d.pop("result_json")
    d["result"] = json.loads(raw) if raw else None
    return d
