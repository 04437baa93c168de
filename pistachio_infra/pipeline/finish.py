"""The end of a run: what it cost (ledger) and its report (runs/<job>/<timestamp>/)."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..state import Store
from .context import RunContext
from .results import BootstrapDone, CaptionDone, Event, HarvestDone, InstallDone, ProvisionDone, TrainDone, VerifyDone


def record_costs(store: Store, job_id: int, cloud: Any = None) -> tuple[float, float]:
    """Billed cost of every pod of the job into the ledger; returns (billed USD, billed seconds). The money is the
    cloud's billing report's (campaign/ledger.cloud_billing); only a pod it does not list falls back to our count
    (cost_per_hr × seconds from create to gone), which runs long when we noticed the pod gone late. The estimate
    made at training start goes on the ledger row of the first pod."""
    from ..campaign.ledger import cloud_billing

    estimate = estimated_cost(store, job_id)
    pods = [p for p in store.pods(job_id=job_id) if p.pod_id]
    billed = (cloud_billing(cloud, min(p.created_at for p in pods)) if cloud is not None and pods else None) or {}
    total_usd = total_s = 0.0
    for i, pod in enumerate(pods):
        end = pod.gone_at or time.time()
        seconds = max(0.0, end - pod.created_at)
        usd = billed.get(pod.pod_id or "", (pod.cost_per_hr or 0.0) * seconds / 3600)
        store.record_billing(pod.pod_id, billed_usd=usd, billed_seconds=seconds, job_id=job_id,
                             estimated_usd=estimate if i == 0 else None)
        total_usd += usd
        total_s += seconds
    return total_usd, total_s


def estimated_cost(store: Store, job_id: int) -> float | None:
    return next((e["usd"] for e in reversed(store.events(job_id)) if e["kind"] == Event.ESTIMATE), None)


def environment_lock(ctx: RunContext) -> dict[str, Any]:
    from ..catalog import sources

    boot = ctx.stages.get(BootstrapDone)
    recorded = boot.lock if boot is not None else None
    if recorded and "error" not in recorded:
        return recorded  # rebuild.current_lock_summary, recorded when the pod was bootstrapped
    pins: dict[str, Any] = {"image": sources().image.name}
    for name, repo in sources().for_role("train").items():
        pin = ctx.cloud.repo_overrides.get(name)
        pins[name] = {"url": pin.url if pin else repo.url, "commit": pin.commit if pin else repo.commit}
    pins["base_model"] = ctx.job.base_model
    return pins


def write_run_report(ctx: RunContext, billed_usd: float | None) -> Path:
    from .harvest import selection
    from .report import ReportData, report_dir, write_report

    sel = selection(ctx) if ctx.stages.is_done("train") else None
    install, harvested = ctx.stages.get(InstallDone), ctx.stages.get(HarvestDone)
    installed = (install.installed if install else None) or (harvested.path if harvested else None)
    provision = ctx.stages.get(ProvisionDone) or ProvisionDone()
    trained = ctx.stages.get(TrainDone)
    data = ReportData(
        job=ctx.job.name,
        character=ctx.job.character,
        trigger=ctx.job.trigger,
        gpu_class=provision.gpu_class or ctx.gpu_classes[0],
        pod_id=provision.pod_id,
        gpu_requested=ctx.gpu_classes[0],
        selection=sel,
        configs=sorted((ctx.work_dir / "configs").glob("*.toml")),
        captions_dir=ctx.captions_dir if ctx.captions_dir.is_dir() else None,
        cost_estimated_usd=estimated_cost(ctx.store, ctx.job_id),
        cost_billed_usd=billed_usd,
        stage_seconds=ctx.stages.seconds(),
        lock=environment_lock(ctx),
        lora_path=installed,
        wandb_url=ctx.wandb_url or (trained.wandb_url if trained else None),
        started_at=ctx.started,
        finished_at=datetime.now(UTC),
        notes=[*ctx.notes, *_recorded_notes(ctx)],
        **_samples(ctx),
    )
    staging = ctx.work_dir / "report-staging"
    shutil.rmtree(staging, ignore_errors=True)
    written = write_report(staging, data)
    staged = report_dir(staging, data)
    ctx.run_folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(staged, ctx.run_folder, dirs_exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    return ctx.run_folder / written.name


def _samples(ctx: RunContext) -> dict[str, Any]:
    """The verify stage's files as report-relative paths (they live in <run folder>/samples/)."""
    done = ctx.stages.get(VerifyDone)
    if done is None:
        return {}
    if not done.samples or done.folder is None:
        return {"samples_note": f"skipped ({done.reason})" if done.reason else "skipped"}
    folder = Path(done.folder).name
    rows = [(s["prompt"], s["seed"], s["kind"], f"{folder}/{s['without']}", f"{folder}/{s['with_lora']}")
            for s in done.samples]
    return {"samples": rows, "samples_sheet": Path(done.sheet) if done.sheet else None}


def _recorded_notes(ctx: RunContext) -> list[str]:
    notes = []
    captioned = ctx.stages.get(CaptionDone)
    dropped = captioned.dropped if captioned else ()
    if dropped and not any("dropped" in n for n in ctx.notes):
        notes.append(f"dropped (no caption after a retry): {', '.join(dropped)}")
    trained = ctx.stages.get(TrainDone)
    resumed = trained.resumed_at if trained else None
    if resumed:
        notes.append(f"training resumed from the checkpoint at step {resumed}")
    lost = [e for e in ctx.store.events(ctx.job_id) if e["kind"] == Event.POD_LOST]
    if lost:
        notes.append(f"{len(lost)} pod(s) lost during the run (preempted or stopped); a new pod took over each time")
    return notes
