"""The campaign executor: jobs run concurrently (up to max_concurrent), each through the train pipeline in its own
worker process, under one hard budget.

The budget is enforced three ways:
- the plan leaves out the jobs the budget cannot pay for (`not_started`), so the money finishes jobs rather than
  starting every one and completing none;
- before a job starts it gets an *allowance* reserved from the budget: its high estimate with headroom, or its
  equal share of the free money among the jobs yet to start if that is more, never more than is free (the budget
  less the money spent and the allowances of running jobs). While other jobs run, a job starts only when its whole
  high-estimate allowance is free (else it waits for their unspent money to come back); with nothing running it
  starts when the free money covers its expected cost. So the allowances of everything running never add up to
  more than the budget, and no job is started on a share too thin to finish;
- its pod's watchdog max runtime is the allowance ÷ the $/h: even with this process SIGKILLed (or the laptop
  gone) no pod outlives its share;
- while running, the executor stops a job that reaches its allowance, and everything when the budget is spent.
A job that fails is retried (`retries`), then skipped; the others go on. Ctrl-C / SIGTERM stop every worker (each
terminates its pod) and a final sweep terminates anything left. Rerunning the same command resumes: done jobs are
kept, the others continue from their last finished stage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PistachioError
from ..money import usd
from ..settings import get_settings
from ..state import Store
from .ledger import billed, spent, sync
from .records import CampaignRecords
from .spec import Campaign

ALLOWANCE_HEADROOM = 1.25  # a job's allowance: its high estimate × this (capped by what is left)
STOP_LATENCY_S = 10.0  # from deciding to stop a job to its pod's billing ending (SIGTERM → terminate)


@dataclass
class Running:
    job: str
    proc: subprocess.Popen
    result_path: Path
    allowance: float
    baseline: float  # what the job had spent before this launch
    price: float
    started: float
    stop_reason: str | None = None
    stop_sent_at: float | None = None


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    not_started: dict[str, str] = field(default_factory=dict)  # left out by the plan: the budget cannot pay for them
    spent_usd: float = 0.0
    budget_usd: float = 0.0
    left_pods: int = 0

    @property
    def complete(self) -> bool:
        return not (self.failed or self.stopped or self.skipped or self.not_started)


def plan_records(ctx: Any) -> list[dict[str, Any]]:
    return [{"job": a.job, "gpu": a.gpu_class, "dc": a.data_center_id, "warm": a.warm, "price": a.price_per_hr,
             "usd_low": a.estimate.usd[0], "usd": a.estimate.usd[1], "usd_high": a.estimate.usd[2],
             "seconds": a.estimate.seconds[1], "stock_cap": a.capacity} for a in ctx.plan.assignments]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _detach_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A managed campaign's worker whose controller dies gets SIGUSR1 (worker.py: "detach"): a job pod past its
    upload finishes and publishes on its own (a new controller adopts it); one before it tears down."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGUSR1)  # PR_SET_PDEATHSIG


class Executor:
    def __init__(self, campaign: Campaign, cloud: Any, store: Store, records: CampaignRecords, say: Any,
                 adopted: dict[str, dict[str, Any]] | None = None, detach_on_loss: bool = False) -> None:
        self.c = campaign
        # a managed campaign's controller: losing it detaches its jobs instead of stopping them
        self.detach_on_loss = detach_on_loss
        # job -> its live pod, left by a lost controller (campaign/controller.py): watched to its published result
        # on its first launch instead of trained again
        self.adopted = dict(adopted or {})
        self.cloud = cloud
        self.cloud_name = cloud.name
        self.store = store
        self.records = records
        self.say = say
        self.running: dict[str, Running] = {}
        knobs = get_settings()
        self.poll_s = knobs.campaign_poll_s
        self.grace_s = knobs.campaign_stop_grace_s
        self.watchdog_poll_s = 15.0 if knobs.watchdog.poll_s is None else knobs.watchdog.poll_s
        from ..paths import state_dir

        self.folder = state_dir() / "campaigns" / self.c.name
        self.folder.mkdir(parents=True, exist_ok=True)

    # --- money ------------------------------------------------------------------------------------------

    def spend_by_job(self) -> dict[str, float]:
        rows = self.store.jobs(campaign=self.c.name)
        ids = [r["id"] for r in rows if r["cloud"] == self.cloud_name]
        per_id = spent(self.store, ids)
        out: dict[str, float] = {}
        for r in rows:
            if r["id"] in per_id:
                out[r["name"]] = out.get(r["name"], 0.0) + per_id[r["id"]]
        return out

    def _margin(self, price: float) -> float:
        return price * (self.poll_s + STOP_LATENCY_S) / 3600

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        from ..signals import interruptible, shielded

        budget = self.c.settings.budget_usd
        deadline = time.time() + self.c.settings.deadline_hours * 3600 if self.c.settings.deadline_hours else None
        rows = {r["job"]: r for r in self.records.jobs(self.c.name, self.cloud_name)}
        stored = self.records.campaign(self.c.name, self.cloud_name) or {}
        # the planned stock per offer: how many of the campaign's jobs may run on one offer at once
        self.stock_cap = {r["job"]: int(r.get("stock_cap") or self.c.settings.max_concurrent)
                          for r in stored.get("plan", [])}
        outcome = Outcome(budget_usd=budget)
        for name, row in rows.items():  # a rerun gives every unfinished job a fresh set of attempts
            if row["status"] == "not_started":
                outcome.not_started[name] = row["error"] or "the budget leaves it out"
            elif row["status"] != "done":
                self.records.update_job(self.c.name, self.cloud_name, name, status="pending", attempts=0, pid=None,
                                        error=None)
        self.records.set_status(self.c.name, self.cloud_name, "running")
        stopping: str | None = None
        try:
            with interruptible():
                while True:
                    by_job = self.spend_by_job()
                    total = sum(by_job.values())
                    self._police(by_job)
                    margin = max((self._margin(r.price) for r in self.running.values()), default=0.0)
                    if stopping is None and self.running and total >= budget - margin:
                        stopping = f"budget exhausted ({usd(total, like=budget)} of {usd(budget)})"
                        self.say(f"[red]{stopping}[/red]: stopping every job")
                        for r in self.running.values():
                            self._stop(r, stopping)
                    self._reap(outcome)
                    rows = {r["job"]: r for r in self.records.jobs(self.c.name, self.cloud_name)}
                    pending = [r for r in rows.values() if r["status"] == "pending" and r["job"] not in self.running]
                    if stopping is None and deadline is not None and time.time() > deadline and pending:
                        stopping = "the campaign's deadline passed"
                    if stopping is not None:
                        for r in pending:
                            self._mark(r["job"], "skipped", stopping, outcome.skipped)
                        pending = []
                    while pending and len(self.running) < self.c.settings.max_concurrent:
                        row = self._next(pending, rows)
                        if row is None:
                            break  # every waiting job's offer runs as many jobs as its stock allows
                        pending.remove(row)
                        by_job = self.spend_by_job()
                        reserved = sum(max(0.0, r.allowance - (by_job.get(r.job, 0.0) - r.baseline))
                                       for r in self.running.values())
                        free = budget - sum(by_job.values()) - reserved
                        need = float(row["est_usd"] or 0.0)
                        whole = self._whole_allowance(row)
                        if self.running and free < whole:
                            break  # wait: the running jobs hand back what they do not spend; no thin shares
                        if free < need:
                            why = f"budget: ${max(0.0, free):.4f} left, the job needs ${need:.4f}"
                            self._mark(row["job"], "skipped", why, outcome.skipped)
                            continue
                        self._launch(row, free, by_job.get(row["job"], 0.0), waiting=len(pending) + 1)
                    if not self.running and not [r for r in self.records.jobs(self.c.name, self.cloud_name)
                                                 if r["status"] == "pending"]:
                        break
                    time.sleep(self.poll_s)
        except BaseException:
            with shielded("stopping the campaign's jobs and terminating their pods"):
                self.say("[yellow]interrupted[/yellow]: stopping every job (each terminates its pod)")
                for r in self.running.values():
                    self._stop(r, "interrupted")
                self._wait_all()
                for name in list(self.running):
                    self.records.update_job(self.c.name, self.cloud_name, name, status="pending", pid=None,
                                            error="interrupted: rerun to resume")
                self.running.clear()
                self._sweep()
                sync(self.store, self.cloud, campaign=self.c.name)
                self.records.set_status(self.c.name, self.cloud_name, "stopped")
            raise
        with shielded("terminating the campaign's pods"):
            outcome.left_pods = self._sweep()
            sync(self.store, self.cloud, campaign=self.c.name)
        ids = [r["id"] for r in self.store.jobs(campaign=self.c.name) if r["cloud"] == self.cloud_name]
        outcome.spent_usd = billed(self.store, ids, campaign=self.c.name)  # what RunPod billed, not our running count
        for r in self.records.jobs(self.c.name, self.cloud_name):
            if r["status"] == "done" and r["job"] not in outcome.done:
                outcome.done.append(r["job"])
        self.records.set_status(self.c.name, self.cloud_name, "done" if outcome.complete else "stopped")
        return outcome

    # --- jobs -------------------------------------------------------------------------------------------

    def _next(self, pending: list[dict[str, Any]], rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The first waiting job (plan order) whose planned offer runs fewer of our jobs than its stock allows."""
        busy: dict[tuple[Any, Any], int] = {}
        for name in self.running:
            r = rows.get(name)
            if r is not None:
                key = (r["gpu_class"], r["data_center_id"])
                busy[key] = busy.get(key, 0) + 1
        for row in pending:
            cap = self.stock_cap.get(row["job"], self.c.settings.max_concurrent)
            if busy.get((row["gpu_class"], row["data_center_id"]), 0) < cap:
                return row
        return None

    def _whole_allowance(self, row: dict[str, Any]) -> float:
        """What a job needs reserved to finish at its high estimate: with headroom, within its own budget_usd."""
        spec_job = next(j for j in self.c.jobs if j.name == row["job"])
        want = max(float(row["est_high"] or 0.0) * ALLOWANCE_HEADROOM, float(row["est_usd"] or 0.0))
        return min(want, spec_job.budget_usd or float("inf"))

    def _live_price(self, gpu_class: str, planned: float) -> float:
        from ..catalog import gpu_class as lookup
        from ..runpod import connect

        try:
            api = connect(self.cloud)
            types = {g.id: g for g in api.list_gpu_types()}
            live = types.get(lookup(gpu_class).gpu_type_id)
            price = live.secure_price if live else None
        except PistachioError:
            price = None
        return max(planned, price or 0.0)

    def _launch(self, row: dict[str, Any], free: float, baseline: float, waiting: int) -> None:
        job = row["job"]
        price = self._live_price(row["gpu_class"], float(row["price_per_hr"]))
        # its high estimate with headroom, or its equal share of what is free among the jobs yet to start if that
        # is more: a job slower than predicted may use money no other job is waiting for, never theirs
        want = max(float(row["est_high"] or 0.0) * ALLOWANCE_HEADROOM, float(row["est_usd"] or 0.0),
                   free / max(1, waiting))
        spec_job = next(j for j in self.c.jobs if j.name == job)
        allowance = min(free, want, spec_job.budget_usd or float("inf"))
        # the pod may run until the allowance is spent, less the watchdog's reaction time
        max_s = allowance / price * 3600 - self.watchdog_poll_s - 5
        if max_s <= 0:
            self._mark(job, "skipped", f"allowance ${allowance:.4f} buys no pod time at ${price:.2f}/h", {})
            return
        attempt = int(row["attempts"] or 0) + 1
        request = {"source": str(self.c.path), "job": job, "gpu_class": row["gpu_class"],
                   "data_center": row["data_center_id"], "warm": bool(row["warm"]), "max_hours": max_s / 3600}
        if self.detach_on_loss:
            request["managed"] = True
        adopt = self.adopted.pop(job, None)
        if adopt is not None:  # it runs on its own pod already: watch it, train nothing
            request["adopt"] = adopt
        req_path = self.folder / f"{job}.request.json"
        res_path = self.folder / f"{job}.result.json"
        log_path = self.folder / f"{job}.log"
        req_path.write_text(json.dumps(request))
        res_path.unlink(missing_ok=True)
        with log_path.open("a") as log:
            log.write(f"\n=== attempt {attempt}: {row['gpu_class']} in {row['data_center_id']}, allowance "
                      f"${allowance:.4f}, watchdog {max_s:.0f}s"
                      f"{' (adopted pod ' + adopt['pod_name'] + ')' if adopt else ''} ===\n")
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "pistachio_infra.campaign.worker", str(req_path), str(res_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_detach_with_parent if self.detach_on_loss else _die_with_parent,
                # losing the controller detaches at once: no window for a "second Ctrl-C" (the kernel's parent-death
                # signal can come twice) to stop the job
                env={**os.environ, "PISTACHIO_DETACH_GRACE_S": "0"} if self.detach_on_loss else None,
            )
        self.running[job] = Running(job, proc, res_path, allowance, baseline, price, time.time())
        self.records.update_job(self.c.name, self.cloud_name, job, status="running", attempts=attempt, pid=proc.pid,
                                allowance_usd=allowance, log_path=str(log_path), error=None)
        self.say(f"{job}: started (attempt {attempt}) on {row['gpu_class']} in {row['data_center_id'] or 'any DC'}"
                 f"{' (warm cache)' if row['warm'] else ''}; allowance ${allowance:.4f}, pod max {_dur(max_s)}")

    def _police(self, by_job: dict[str, float]) -> None:
        """Stop a job that reached its allowance (before its watchdog has to)."""
        for r in self.running.values():
            used = by_job.get(r.job, 0.0) - r.baseline
            if r.stop_reason is None and used >= r.allowance - self._margin(r.price):
                self._stop(r, f"reached its allowance (${used:.4f} of ${r.allowance:.4f})")

    def _stop(self, r: Running, why: str) -> None:
        if r.stop_sent_at is None and r.proc.poll() is None:
            r.stop_reason = r.stop_reason or why
            r.stop_sent_at = time.time()
            self.say(f"{r.job}: stopping ({why})")
            r.proc.send_signal(signal.SIGTERM)
        elif r.stop_sent_at is not None and r.proc.poll() is None and time.time() - r.stop_sent_at > self.grace_s:
            r.proc.kill()

    def _reap(self, outcome: Outcome) -> None:
        for name, r in list(self.running.items()):
            if r.stop_sent_at is not None:
                self._stop(r, r.stop_reason or "")  # escalates to SIGKILL after the grace period
            code = r.proc.poll()
            if code is None:
                continue
            del self.running[name]
            result = _read_json(r.result_path)
            row = next(x for x in self.records.jobs(self.c.name, self.cloud_name) if x["job"] == name)
            if r.stop_reason is not None:
                self._sweep(name)
                self._mark(name, "stopped", r.stop_reason, outcome.stopped)
            elif code == 0 and result.get("ok"):
                self.records.update_job(self.c.name, self.cloud_name, name, status="done", pid=None, error=None)
                outcome.done.append(name)
                self.say(f"[green]{name}: done[/green] (billed ${result.get('billed_usd', 0):.4f}) "
                         f"{result.get('installed') or result.get('lora') or ''}")
            else:
                self._sweep(name)
                error = result.get("error") or f"worker exited with {code}"
                if int(row["attempts"] or 0) <= self.c.settings.retries:
                    self.records.update_job(self.c.name, self.cloud_name, name, status="pending", pid=None,
                                            error=error)
                    self.say(f"[yellow]{name}: failed[/yellow] ({error}); retrying")
                else:
                    self._mark(name, "failed", error, outcome.failed)

    def _mark(self, job: str, status: str, why: str, into: dict[str, str]) -> None:
        self.records.update_job(self.c.name, self.cloud_name, job, status=status, pid=None, error=why)
        into[job] = why
        self.say(f"[yellow]{job}: {status}[/yellow] ({why})")

    def _wait_all(self) -> None:
        deadline = time.monotonic() + self.grace_s
        for r in self.running.values():
            try:
                r.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait(timeout=10)

    def _sweep(self, job: str | None = None) -> int:
        """Terminate any live pod of the campaign's jobs (of one job); returns how many were live."""
        ids = [r["id"] for r in self.store.jobs(campaign=self.c.name)
               if r["cloud"] == self.cloud_name and (job is None or r["name"] == job)]
        live = [p for i in ids for p in self.store.pods(live_only=True, job_id=i)]
        if live:
            from ..pods import PodLifecycle
            from ..runpod import connect

            lifecycle = PodLifecycle(connect(self.cloud), self.store, self.cloud, report=self.say)
            for rec in live:
                lifecycle.terminate(rec.name, f"campaign {self.c.name}: sweep")
        return len(live)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
