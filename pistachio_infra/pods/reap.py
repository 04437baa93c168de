"""Pods that exist at RunPod but no live job of ours is using: found by name prefix and our state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..runpod.port import Pod, PodStatus, RunPodApi
from ..state import PodRecord, Store
from .lifecycle import NAME_PREFIX


@dataclass(frozen=True)
class Orphan:
    pod: Pod
    record: PodRecord | None
    why: str


def find_orphans(
    api: RunPodApi, store: Store, *, now: float | None = None, client_alive: Callable[[dict], bool] | None = None,
) -> list[Orphan]:
    """Our pods (name prefix) that are listed by RunPod but not in use:
    unknown to this machine's state, recorded as gone, `up` pods past their watchdog deadline, or pods whose
    job is not running. Pods of running jobs and `up` pods within their deadline are kept. A job recorded as
    running whose client process is gone (SIGKILL, a closed laptop: `client_alive(job)` is false) is not."""
    now = now or time.time()
    running_jobs = {j["id"] for j in store.jobs()
                    if j["status"] == "running" and (client_alive is None or client_alive(j))}
    orphans: list[Orphan] = []
    for pod in api.list_pods():
        if not pod.name.startswith(NAME_PREFIX) or pod.status == PodStatus.TERMINATED:
            continue
        rec = store.pod(pod.id) or store.pod(pod.name)
        if (rec is None or rec.purpose == "controller") and pod.env.get("PISTACHIO_CAMPAIGN") and \
                (rec is None or rec.status != "gone"):
            continue  # a detached campaign's pod (controller or job): its own guard bounds it; `campaign stop` ends it
        why = _why_orphan(rec, running_jobs, now)
        if why:
            orphans.append(Orphan(pod, rec, why))
    return orphans


def _why_orphan(rec: PodRecord | None, running_jobs: set[int], now: float) -> str | None:
    if rec is None:
        return "not in this machine's state (a crash before it was recorded, or another machine's pod)"
    if rec.status == "gone":
        return f"recorded as gone ({rec.gone_reason or 'no reason'}) but still exists"
    if rec.purpose == "up" and rec.job_id is None:
        if rec.watchdog_deadline is not None and rec.watchdog_deadline < now:
            return "an `up` pod past its watchdog deadline"
        if rec.watchdog_deadline is None and rec.status != "ready":
            return "an `up` pod that never became ready"
        return None
    if rec.job_id is not None and rec.job_id in running_jobs:
        return None
    if rec.job_id is None:
        return f"a {rec.purpose} pod with no job"
    return f"its job #{rec.job_id} is not running"
