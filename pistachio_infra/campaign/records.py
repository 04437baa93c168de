"""The campaign's own tables in the state database: the stored plan and each job's progress, allowance and
estimate. (Pods, jobs, stages and the ledger stay in state.Store; campaign jobs are jobs with a campaign column.)"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..paths import state_db_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT NOT NULL, cloud TEXT NOT NULL, fingerprint TEXT NOT NULL, source TEXT,
    budget_usd REAL NOT NULL, plan_json TEXT NOT NULL, status TEXT NOT NULL,   -- planned | running | done | stopped
    created_at REAL NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (name, cloud)
);
CREATE TABLE IF NOT EXISTS campaign_jobs (
    campaign TEXT NOT NULL, cloud TEXT NOT NULL, job TEXT NOT NULL, position INTEGER NOT NULL,
    status TEXT NOT NULL,            -- pending | running | done | failed | stopped | skipped | not_started
    attempts INTEGER NOT NULL DEFAULT 0,
    gpu_class TEXT, data_center_id TEXT, warm INTEGER, price_per_hr REAL,
    est_low REAL, est_usd REAL, est_high REAL, est_seconds REAL,
    allowance_usd REAL, pid INTEGER, log_path TEXT, error TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (campaign, cloud, job)
);
"""

JOB_FIELDS = {"status", "attempts", "gpu_class", "data_center_id", "warm", "price_per_hr", "est_low", "est_usd",
              "est_high", "est_seconds", "allowance_usd", "pid", "log_path", "error"}


class CampaignRecords:
    def __init__(self, path: Path | None = None) -> None:
        self._db = sqlite3.connect(path or state_db_path(), timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- campaigns --------------------------------------------------------------------------------------

    def campaign(self, name: str, cloud: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM campaigns WHERE name = ? AND cloud = ?", (name, cloud)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["plan"] = json.loads(d.pop("plan_json"))
        return d

    def campaigns(self, cloud: str | None = None) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT name, cloud FROM campaigns ORDER BY created_at").fetchall()
        return [c for r in rows if (cloud is None or r["cloud"] == cloud)
                and (c := self.campaign(r["name"], r["cloud"])) is not None]

    def save_plan(self, name: str, cloud: str, *, fingerprint: str, source: str, budget_usd: float,
                  plan: list[dict[str, Any]], not_started: dict[str, str] | None = None) -> None:
        """Store a (new) plan; jobs already done keep their rows, the others take the plan's choices. Jobs the
        budget leaves out (`not_started`: job → why) are recorded as such and never started by the executor."""
        now = time.time()
        with self._tx():
            self._db.execute(
                "INSERT INTO campaigns (name, cloud, fingerprint, source, budget_usd, plan_json, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?) ON CONFLICT (name, cloud) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, source = excluded.source, budget_usd = excluded.budget_usd,"
                " plan_json = excluded.plan_json, updated_at = excluded.updated_at",
                (name, cloud, fingerprint, source, budget_usd, json.dumps(plan), now, now))
            for pos, row in enumerate(plan):
                self._db.execute(
                    "INSERT INTO campaign_jobs (campaign, cloud, job, position, status, gpu_class, data_center_id,"
                    " warm, price_per_hr, est_low, est_usd, est_high, est_seconds, updated_at)"
                    " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (campaign, cloud, job)"
                    " DO UPDATE SET position = excluded.position, gpu_class = excluded.gpu_class,"
                    " status = CASE WHEN campaign_jobs.status = 'not_started' THEN 'pending'"
                    " ELSE campaign_jobs.status END,"
                    " data_center_id = excluded.data_center_id, warm = excluded.warm,"
                    " price_per_hr = excluded.price_per_hr, est_low = excluded.est_low, est_usd = excluded.est_usd,"
                    " est_high = excluded.est_high, est_seconds = excluded.est_seconds,"
                    " updated_at = excluded.updated_at WHERE campaign_jobs.status != 'done'",
                    (name, cloud, row["job"], pos, row["gpu"], row["dc"], int(row["warm"]), row["price"],
                     row["usd_low"], row["usd"], row["usd_high"], row["seconds"], now))
            for pos, (job, why) in enumerate((not_started or {}).items(), start=len(plan)):
                self._db.execute(
                    "INSERT INTO campaign_jobs (campaign, cloud, job, position, status, error, updated_at)"
                    " VALUES (?, ?, ?, ?, 'not_started', ?, ?) ON CONFLICT (campaign, cloud, job) DO UPDATE SET"
                    " position = excluded.position, status = 'not_started', error = excluded.error,"
                    " gpu_class = NULL, data_center_id = NULL, est_usd = NULL, est_low = NULL, est_high = NULL,"
                    " updated_at = excluded.updated_at WHERE campaign_jobs.status != 'done'",
                    (name, cloud, job, pos, why, now))

    def add_done(self, name: str, cloud: str, job: str, *, position: int) -> None:
        """A job finished elsewhere (published by an earlier controller of a managed campaign): done, never run."""
        self._db.execute(
            "INSERT INTO campaign_jobs (campaign, cloud, job, position, status, updated_at) VALUES (?, ?, ?, ?, 'done',"
            " ?) ON CONFLICT (campaign, cloud, job) DO UPDATE SET status = 'done', error = NULL",
            (name, cloud, job, position, time.time()))

    def set_status(self, name: str, cloud: str, status: str) -> None:
        self._db.execute("UPDATE campaigns SET status = ?, updated_at = ? WHERE name = ? AND cloud = ?",
                         (status, time.time(), name, cloud))

    # --- jobs -------------------------------------------------------------------------------------------

    def jobs(self, name: str, cloud: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM campaign_jobs WHERE campaign = ? AND cloud = ? ORDER BY position",
                                (name, cloud)).fetchall()
        return [dict(r) for r in rows]

    def update_job(self, name: str, cloud: str, job: str, **fields: Any) -> None:
        unknown = set(fields) - JOB_FIELDS
        if unknown:
            raise ValueError(f"unknown campaign job fields: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(
            f"UPDATE campaign_jobs SET {sets}, updated_at = ? WHERE campaign = ? AND cloud = ? AND job = ?",
            (*fields.values(), time.time(), name, cloud, job))

    def _tx(self):  # type: ignore[no-untyped-def]
        from contextlib import contextmanager

        @contextmanager
        def tx():  # type: ignore[no-untyped-def]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

        return tx()
