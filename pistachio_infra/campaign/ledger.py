"""The ledger: every pod-second billed, attributed to its job (and campaign).

`spent()` is our own running figure (the pod's $/h × seconds from its record to gone), used live by the executor;
it starts counting when the pod is recorded, just before the create call, so it never undercounts. `sync()` asks the
cloud's billing report (REST v2 `GET /billing/pods`, per pod) for what was actually billed and writes it to the
ledger table, falling back to our figure for a pod the report does not (yet) list.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..state import PodRecord, Store


def pod_cost(pod: PodRecord, now: float | None = None) -> tuple[float, float]:
    """(USD, seconds) of one pod by our own count."""
    if not pod.pod_id:
        return 0.0, 0.0
    end = pod.gone_at or (now or time.time())
    seconds = max(0.0, end - pod.created_at)
    return (pod.cost_per_hr or 0.0) * seconds / 3600, seconds


def spent(store: Store, job_ids: list[int], now: float | None = None) -> dict[int, float]:
    """USD spent so far per job id (live pods counted up to now)."""
    out: dict[int, float] = {}
    for job_id in job_ids:
        out[job_id] = sum(pod_cost(p, now)[0] for p in store.pods(job_id=job_id))
    return out


def billed(store: Store, job_ids: list[int], *, campaign: str) -> float:
    """USD billed for these jobs' pods, as the last `sync` wrote it (the cloud's figure where it had one). Our own
    figure runs until RunPod confirms a pod gone, so on a slow machine it overshoots what was billed."""
    ids = set(job_ids)
    return sum(r["billed_usd"] or 0.0 for r in store.ledger(campaign=campaign) if r["job_id"] in ids)


def cloud_billing(cloud: Any, since: float) -> dict[str, float] | None:
    """pod id -> USD billed since `since` from the cloud's billing report; None when it cannot be read."""
    import httpx

    start = datetime.fromtimestamp(since - 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        resp = httpx.get(f"{cloud.rest_url.rstrip('/')}/billing/pods",
                         params={"bucketSize": "day", "startTime": start},
                         headers={"Authorization": f"Bearer {cloud.api_key}"}, timeout=30)
        resp.raise_for_status()
        records = resp.json().get("records", [])
    except (httpx.HTTPError, ValueError):
        return None
    totals: dict[str, float] = defaultdict(float)
    for rec in records:
        if rec.get("podId"):
            totals[rec["podId"]] += float(rec.get("totalAmount") or 0.0)
    return dict(totals)


def sync(store: Store, cloud: Any, *, campaign: str | None = None) -> int:
    """Write billed cost per pod (the cloud's figure when it has one) to the ledger; returns pods written."""
    cloud_name = cloud.name
    jobs = {j["id"]: j for j in store.jobs(campaign=campaign)}
    pods = [p for p in store.pods(cloud=cloud_name) if p.pod_id and (campaign is None or p.job_id in jobs)]
    if not pods:
        return 0
    billed = cloud_billing(cloud, min(p.created_at for p in pods)) or {}
    for pod in pods:
        ours, seconds = pod_cost(pod)
        usd = billed.get(pod.pod_id or "", ours)
        job = jobs.get(pod.job_id) if pod.job_id is not None else None
        store.record_billing(pod.pod_id or "", billed_usd=usd, billed_seconds=seconds, job_id=pod.job_id,
                             campaign=job.get("campaign") if job else None)
    return len(pods)


@dataclass
class CostRow:
    job: str
    job_id: int | None
    campaign: str | None
    status: str
    gpu_class: str | None
    pods: int
    pod_seconds: float
    estimated_usd: float | None
    billed_usd: float


def cost_rows(store: Store, *, campaign: str | None = None, estimates: dict[str, float] | None = None
              ) -> list[CostRow]:
    """One row per job run: its estimate (the campaign plan's, else the run's own) and billed cost."""
    from ..pipeline.finish import estimated_cost

    ledger = {r["pod_id"]: r for r in store.ledger()}
    rows = []
    for job in store.jobs(campaign=campaign):
        pods = [p for p in store.pods(job_id=job["id"]) if p.pod_id]
        billed = seconds = 0.0
        for p in pods:
            rec = ledger.get(p.pod_id)
            usd, secs = (rec["billed_usd"], rec["billed_seconds"]) if rec else pod_cost(p)
            billed += usd or 0.0
            seconds += secs or 0.0
        est = (estimates or {}).get(job["name"]) if job.get("campaign") else None
        if est is None:
            est = estimated_cost(store, job["id"])
        provision = next((s.result for s in store.stages(job["id"]) if s.stage == "provision" and s.result), {})
        rows.append(CostRow(job=job["name"], job_id=job["id"], campaign=job.get("campaign"), status=job["status"],
                            gpu_class=(provision or {}).get("gpu_class") or (pods[-1].gpu_class if pods else None),
                            pods=len(pods), pod_seconds=seconds, estimated_usd=est, billed_usd=billed))
    return rows


def write_csv(rows: list[CostRow], path: Path) -> None:
    fields = list(CostRow.__dataclass_fields__)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
