"""The stage machine of one training job (one character LoRA):

preflight → provision → bootstrap → upload → caption → split → render → train → select → harvest → install →
teardown → report.

- preflight is local and free: the spec, the dataset, the credentials, a render dry-run for every requested class.
  Refused input means no pod is ever created.
- every stage is recorded in the state store (stages.py); rerunning the same command after a crash, Ctrl-C or
  SIGKILL continues from the last finished stage, re-attaching to the job's live pod and to a training still
  running there. A run whose inputs changed (spec, dataset files, --recaption, GPU classes) starts over; so does
  `--restart`. The stages themselves live in pipeline/.
- one run per job at a time: a file lock under the state dir; the second run is refused naming the first's pid.
- the pod is always terminated (teardown.pod_session); a lost pod (preempted, stopped) is replaced and the training
  resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config.project import Job, Project
from ..errors import ConfigError, PistachioError
from ..state import Store
from .context import RunContext
from .stages import Stages

MAX_LOST_PODS = 3  # pods lost (preempted) in one run before giving up
DEFAULT_MAX_HOURS = 12.0
RUN_STAMP = "%Y%m%d_%H-%M-%S"


@dataclass
class TrainRequest:
    job: Job
    project: Project | None
    base_dir: Path  # runs/<job>/<timestamp>/ is created under it
    restart: bool = False
    recaption: bool = False
    gpu: tuple[str, ...] = ()  # overrides the job's classes (in fallback order)
    max_hours: float = DEFAULT_MAX_HOURS  # the pod's watchdog terminates it then, whatever happens
    volume: bool | None = None  # mount the env stack's network volume (None: when there is one)
    network_volume: tuple[str, str] | None = None  # (volume id, data center): this one instead of the env stack's
    campaign: str | None = None  # the campaign this run belongs to (its runs resume separately from `train`)
    allow_drift: bool = False  # train even when the pod cannot be made exactly as the project's pistachio.lock


@dataclass
class TrainResult:
    job_id: int
    run_folder: Path
    report: Path
    lora: Path
    installed: str | None
    verdict: str
    step: int
    billed_usd: float
    notes: list[str] = field(default_factory=list)


class JobBusyError(PistachioError):
    pass


# --- the lock -------------------------------------------------------------------------------------------------

@contextmanager
def job_lock(name: str, project: str = "") -> Iterator[None]:
    """Refuse a second run of the same job of the same project (in any process) while this one holds the lock."""
    from filelock import FileLock, Timeout

    from ..paths import state_dir

    folder = state_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    key = f"{name}-{hashlib.sha256(project.encode()).hexdigest()[:12]}" if project else name
    pid_file = folder / f"{key}.pid"
    lock = FileLock(str(folder / f"{key}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        other = pid_file.read_text().strip() if pid_file.is_file() else "unknown"
        raise JobBusyError(f"job {name!r} is already running (pid {other})",
                           f"wait for it to finish, or stop it (kill {other}) and run again to resume") from None
    try:
        pid_file.write_text(f"{os.getpid()}\n")
        yield
    finally:
        pid_file.unlink(missing_ok=True)
        lock.release()


# --- preflight ------------------------------------------------------------------------------------------------

def auto_classes() -> tuple[str, ...]:
    """`gpu = "auto"`: the 48 GB classes by price hint, then the bigger ones (the 24 GB tier swaps blocks: slow)."""
    from ..catalog import gpu_classes

    classes = sorted(gpu_classes().values(), key=lambda c: (c.tier != 48, c.tier < 48, c.price_hint_usd_hr))
    return tuple(c.name for c in classes if c.tier >= 48)


def requested_classes(job: Job, override: tuple[str, ...]) -> tuple[str, ...]:
    from ..catalog import gpu_class

    names = override or (() if job.gpu_auto else tuple(job.gpu))
    if not names or names == ("auto",):
        return auto_classes()
    # "auto" in a list (`--gpu a6000,auto`, gpu = ["a6000", "auto"]): the auto classes not named before it
    expanded = [c for n in names for c in (auto_classes() if n.strip().lower() == "auto" else (gpu_class(n).name,))]
    return tuple(dict.fromkeys(expanded))


def preflight(req: TrainRequest) -> tuple[Any, Any, tuple[str, ...], str]:
    """Everything checked before money is spent. Returns (dataset report, cloud, classes, fingerprint)."""
    from ..config.render import render_job
    from ..credentials import get_secret
    from ..dataset.scan import preflight as dataset_preflight
    from ..endpoints import resolve_cloud
    from ..pods.layout import WorkspaceLayout

    job = req.job
    if req.max_hours <= 0:
        raise ConfigError(f"--max-hours {req.max_hours:g} is not positive", "give the pod's maximum runtime, e.g. 12")
    dataset = dataset_preflight(job.dataset, job.trigger, job.seed, job.eval_split, req.recaption)
    classes = requested_classes(job, req.gpu)
    for cls in classes:  # every class a fallback may land on must render
        render_job(job, cls, WorkspaceLayout(), train_images=len(dataset.train))
    if job.wandb_enabled:
        get_secret("WANDB_API_KEY", required=True)
    cloud = resolve_cloud()  # RUNPOD_API_KEY (or the sandbox)
    project_lock(req, cloud)
    if job.budget_usd:
        _check_budget(job, classes, cloud, len(dataset.train))
    files = [(i.name, i.sha256, bool(i.caption) and not req.recaption) for i in dataset.usable]
    captions = {i.name: i.caption for i in dataset.usable if i.caption and not req.recaption}
    fingerprint = hashlib.sha256(json.dumps(
        {"job": job.model_dump(mode="json"), "files": files, "captions": captions, "classes": classes},
        sort_keys=True, default=str).encode()).hexdigest()
    return dataset, cloud, classes, fingerprint


def project_lock(req: TrainRequest, cloud: Any) -> Any:
    """The project's pistachio.lock (None without one), checked before any pod: its cloud, and that it pins the
    job's base model (its pods are bootstrapped exactly from it)."""
    from ..lock.lockfile import load_lock
    from ..lock.rebuild import check_cloud

    path = Path(req.base_dir).resolve() / "pistachio.lock"
    if not path.is_file():
        return None
    lock = load_lock(path)
    check_cloud(lock, cloud, str(path))
    if req.job.base_model not in lock.models:
        raise ConfigError(f"{path} does not pin the base model {req.job.base_model!r} of job {req.job.name!r}",
                          "rewrite the lock (`pistachio-infra lock --out pistachio.lock`) or move it aside")
    return lock


def minimum_usd(job: Job, classes: tuple[str, ...], cloud: Any, train_images: int) -> float | None:
    """The least any run of `job` can cost: provision + cold bootstrap + model load + one eval cadence of steps,
    all at the fastest times the cost model knows, on the cheapest offer of its classes (None: no prices)."""
    from ..campaign.costmodel import load_timings
    from ..pods.offers import live_offers
    from ..runpod import connect

    api = connect(cloud)
    try:
        offers = [o for o in live_offers(api, classes) if o.price_per_hr]
    finally:
        close = getattr(api, "close", None)
        if close is not None:
            close()
    if not offers:
        return None
    timings = load_timings("sandbox" if cloud.sandbox else "runpod")
    fixed = timings.provision_s[0] + timings.bootstrap_cold_s[0] + timings.train_fixed_s[0]
    every = cadence_steps(job, train_images)
    return min(o.price_per_hr * (fixed + every * timings.step_band(o.gpu_class)[0]) / 3600 for o in offers)


def _check_budget(job: Job, classes: tuple[str, ...], cloud: Any, train_images: int) -> None:
    """Refuse a budget that cannot pay for one checkpoint: the pod's own watchdog would end it before anything."""
    import math

    from ..money import usd

    least = minimum_usd(job, classes, cloud, train_images)
    if least is None or job.budget_usd is None or job.budget_usd >= least:
        return
    scale = 100 if least >= 1 else 10_000
    enough = math.ceil(least * scale) / scale
    raise ConfigError(
        f"budget_usd {usd(job.budget_usd, like=enough)} cannot pay for one checkpoint of {job.name!r} (provision, "
        f"bootstrap and {cadence_steps(job, train_images)} steps cost at least {usd(enough)} on the cheapest offer)",
        f"set budget_usd to {usd(enough)} or more (nothing was rented)")


def cadence_steps(job: Job, train_images: int) -> int:
    from ..catalog import EFFECTIVE_BATCH
    from ..config.render import cadence_for

    return cadence_for(job, EFFECTIVE_BATCH, train_images=train_images).every


# --- the run --------------------------------------------------------------------------------------------------

def run_training(req: TrainRequest, console: Any) -> TrainResult:
    with job_lock(req.job.name, project_key(req)):
        store = Store()
        try:
            return _run(req, console, store)
        finally:
            store.close()


def project_key(req: TrainRequest) -> str:
    """A job's identity is its project (the resolved project folder, where its runs/ live) plus its name."""
    return str(Path(req.base_dir).resolve())


def _open_run(req: TrainRequest, store: Store, cloud: Any, fingerprint: str, console: Any) -> tuple[int, dict]:
    cloud_name = "sandbox" if cloud.sandbox else "runpod"
    last = store.latest_job(req.job.name, cloud=cloud_name, campaign=req.campaign, project=project_key(req))
    if last is not None and last["status"] != "done":
        if not req.restart and last["spec"].get("fingerprint") == fingerprint:
            console.print(f"  resuming run {last['id']} of {req.job.name} (started "
                          f"{last['spec'].get('stamp')}); --restart starts over", highlight=False)
            return last["id"], last["spec"]
        why = "--restart" if req.restart else "the job's settings or images changed"
        console.print(f"  starting over ({why}); the unfinished run {last['id']} is abandoned", highlight=False)
        _abandon(store, cloud, last["id"], console)
    stamp = datetime.now(UTC).strftime(RUN_STAMP)
    spec = {"fingerprint": fingerprint, "stamp": stamp, "job": req.job.model_dump(mode="json"),
            "run_folder": str(Path(req.base_dir).resolve() / "runs" / req.job.name / stamp)}
    return store.create_job(req.job.name, cloud=cloud_name, spec=spec, campaign=req.campaign,
                            project=project_key(req)), spec


def _abandon(store: Store, cloud: Any, job_id: int, console: Any) -> None:
    """Terminate the live pods of an unfinished run that is not resumed (one billing pod per job)."""
    live = store.pods(live_only=True, job_id=job_id)
    if live:
        from ..pods import PodLifecycle
        from ..runpod import connect

        lifecycle = PodLifecycle(connect(cloud), store, cloud, report=lambda m: console.print(f"  {m}"))
        for rec in live:
            lifecycle.terminate(rec.name, "abandoned: the run started over")
    store.finish_job(job_id, "cancelled", {"reason": "abandoned"})


def _run(req: TrainRequest, console: Any, store: Store) -> TrainResult:
    from ..paths import state_dir
    from . import finish
    from .harvest import install

    t0 = time.time()
    console.print(f"[bold]{req.job.name}[/bold]: preflight", highlight=False)
    dataset, cloud, classes, fingerprint = preflight(req)
    job_id, spec = _open_run(req, store, cloud, fingerprint, console)
    stages = Stages(store, job_id, lambda m: console.print(f"  {m}", highlight=False, soft_wrap=True))
    ctx = RunContext(
        job=req.job, project=req.project, job_id=job_id, store=store, cloud=cloud, console=console, stages=stages,
        dataset=dataset, run_folder=Path(spec["run_folder"]),
        work_dir=state_dir() / "work" / f"{req.job.name}-{job_id}",
        started=datetime.strptime(spec["stamp"], RUN_STAMP).replace(tzinfo=UTC),
        gpu_classes=classes, recaption=req.recaption,
    )
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    for warning in dataset.warnings:
        ctx.say(f"[yellow]warning:[/yellow] {warning}")
    if not stages.is_done("preflight"):
        store.stage_started(job_id, "preflight")
        store.stage_done(job_id, "preflight", {"images": len(dataset.usable), "train": len(dataset.train),
                                               "eval": len(dataset.eval), "classes": list(classes),
                                               "seconds": round(time.time() - t0, 3)})
    ctx.say(f"preflight ok: {len(dataset.usable)} images ({len(dataset.train)} train / {len(dataset.eval)} eval), "
            f"GPU {' → '.join(classes)}")
    from ..pods.session import TerminateFailed

    stuck: TerminateFailed | None = None
    try:
        try:
            _pod_phases(ctx, req)
        except TerminateFailed as exc:  # the work is done and harvested: install it, then say what still bills
            stuck = exc
        _local_phases(ctx)
        stages.run("install", lambda: install(ctx))
    except KeyboardInterrupt:
        store.finish_job(job_id, "cancelled", {"error": "interrupted"})
        _cleanup(ctx)
        raise
    except BaseException as exc:
        store.finish_job(job_id, "failed", {"error": str(exc)[:500]})
        _cleanup(ctx)
        raise
    if stuck is not None:
        installed = stages.result("install").get("installed") or stages.result("harvest").get("path")
        store.finish_job(job_id, "failed", {"error": str(stuck)[:500], "lora": installed})
        raise PistachioError(f"the LoRA is installed ({installed}), but {stuck.cause}",
                             f"{stuck.fix}; then rerun the same command to finish the report") from None
    _cleanup(ctx)
    billed, _ = finish.record_costs(store, job_id, cloud)
    report = Path(stages.run("report", lambda: {"path": str(finish.write_run_report(ctx, billed))})["path"])
    chosen = stages.result("select")
    harvested = stages.result("harvest")
    store.finish_job(job_id, "done", {"report": str(report), "lora": harvested.get("path"), "billed_usd": billed})
    return TrainResult(
        job_id=job_id, run_folder=ctx.run_folder, report=report, lora=Path(harvested["path"]),
        installed=stages.result("install").get("installed"), verdict=chosen.get("verdict", ""),
        step=int(chosen.get("step", 0)), billed_usd=billed, notes=ctx.notes,
    )


def _cleanup(ctx: RunContext) -> None:
    """Terminate any pod of this job still live (normally none: pod_session already did) and record teardown."""
    from ..signals import shielded

    with shielded("terminating the job's pods"):
        live = ctx.store.pods(live_only=True, job_id=ctx.job_id)
        if live:
            from ..pods import PodLifecycle
            from ..runpod import connect

            lifecycle = PodLifecycle(connect(ctx.cloud), ctx.store, ctx.cloud, report=ctx.say)
            for rec in live:
                lifecycle.terminate(rec.name, "teardown: end of the run")
        rec = ctx.stages.record("teardown")
        if rec is None or rec.status != "done":
            if rec is None:
                ctx.store.stage_started(ctx.job_id, "teardown")
            ctx.stages.done("teardown", {"pods": [p.name for p in ctx.store.pods(job_id=ctx.job_id)]})


def _needs_pod(ctx: RunContext) -> bool:
    from .harvest import mirrored

    if not ctx.stages.is_done("train"):
        return True
    return not ctx.stages.is_done("harvest") and not mirrored(ctx)


def _pod_phases(ctx: RunContext, req: TrainRequest) -> None:
    from .harvest import select
    from .training import PodLost

    lost = 0
    while True:
        if ctx.stages.is_done("train") and not ctx.stages.is_done("select"):
            ctx.stages.run("select", lambda: select(ctx))
        if not _needs_pod(ctx):
            return
        try:
            _with_pod(ctx, req)
            return
        except PodLost as exc:
            lost += 1
            ctx.store.add_event(ctx.job_id, "pod_lost", {"why": str(exc)})
            if lost > MAX_LOST_PODS:
                raise PistachioError(f"{lost} pods were lost during this run (last: {exc})",
                                     "use an on-demand pod (interruptible = false) or retry later") from None
            ctx.note(f"{exc}: renting a new pod and resuming")


def _local_phases(ctx: RunContext) -> None:
    from .harvest import harvest, select

    if not ctx.stages.is_done("select"):
        ctx.stages.run("select", lambda: select(ctx))
    if not ctx.stages.is_done("harvest"):
        ctx.stages.run("harvest", lambda: harvest(ctx))


def _pod_spec(ctx: RunContext, req: TrainRequest) -> Any:
    from ..pods import PodSpec
    from ..pods.sshkeys import public_key

    volume_id, volume_dc = req.network_volume or _volume(req.volume)
    return PodSpec(
        purpose="job", label=ctx.job.name, gpu_classes=ctx.gpu_classes, public_key=public_key(), job_id=ctx.job_id,
        data_centers=tuple(ctx.job.data_centers), network_volume_id=volume_id, network_volume_dc=volume_dc,
        interruptible=ctx.job.interruptible,
    )


def _volume(wanted: bool | None) -> tuple[str | None, str | None]:
    if wanted is False:
        return None, None
    from ..stacks import outputs

    env = outputs()
    if env is None:
        if wanted:
            raise ConfigError("--volume: no network volume exists (the env stack is not deployed)",
                              "run `pistachio-infra env up` first, or use --no-volume")
        return None, None
    return env.volume_id, env.data_center_id


def _models(ctx: RunContext) -> tuple[str, ...]:
    """Base model always; the captioner only when something is left to caption."""
    from .caption import user_captions

    need_captions = not ctx.stages.is_done("caption") and len(user_captions(ctx)) < len(ctx.dataset.usable)
    return (ctx.job.base_model, "joycaption-alpha-two") if need_captions else (ctx.job.base_model,)


def _max_runtime_s(ctx: RunContext, req: TrainRequest, api: Any) -> float:
    """The watchdog's hard limit: --max-hours, or less when the job's budget buys fewer hours on the dearest GPU
    class it may fall back to (live prices), so even a lost client cannot spend more than the budget."""
    limit = req.max_hours * 3600
    budget = ctx.job.budget_usd
    if not budget:
        return limit
    from ..money import usd
    from ..pods.offers import live_offers

    prices = [o.price_per_hr for o in live_offers(api, ctx.gpu_classes) if o.price_per_hr]
    if not prices:
        return limit
    budget_s = budget / max(prices) * 3600
    if budget_s < limit:
        ctx.say(f"budget {usd(budget)} at up to ${max(prices):.2f}/h: the pod's watchdog ends it after "
                f"{budget_s / 3600:.2f} h at the latest")
    return min(limit, budget_s)


def _with_pod(ctx: RunContext, req: TrainRequest) -> None:
    from ..pods.bootstrap import bootstrap
    from ..pods.session import pod_session
    from ..pods.watchdog import WatchdogPolicy, mark_harvested
    from ..runpod import connect
    from . import caption, prepare, training
    from .harvest import harvest, select

    stages = ctx.stages
    api = connect(ctx.cloud, "graphql" if ctx.job.interruptible else "rest")  # REST v2 cannot rent spot pods
    policy = WatchdogPolicy.from_env(max_runtime_s=_max_runtime_s(ctx, req, api))
    spec = _pod_spec(ctx, req)
    stages.start("provision")
    try:
        with pod_session(spec, policy=policy, models=None, reuse=True, cloud=ctx.cloud, api=api, store=ctx.store,
                         report=ctx.say) as session:
            ctx.session = session
            offer = session.ready.offer
            stages.done("provision", {
                "pod": session.name, "pod_id": session.pod.id,
                "gpu_class": offer.gpu_class if offer else stages.result("provision").get("gpu_class"),
                "data_center": session.pod.data_center_id, "cost_per_hr": session.cost_per_hr,
                "reused": session.ready.reused, "volume": session.pod.network_volume_id,
            })
            if offer is not None and offer.gpu_class != ctx.gpu_classes[0]:
                ctx.note(f"rented {offer.gpu_class} (the first choice {ctx.gpu_classes[0]} had no capacity); "
                         "configs are rendered for it")
            pod = session.name
            try:
                if not stages.is_done("train"):
                    stages.run("bootstrap", lambda: _bootstrap(ctx, bootstrap, req), pod=pod)
                    stages.run("upload", lambda: caption.upload(ctx), pod=pod)
                    stages.run("caption", lambda: caption.caption(ctx, prepare.rendered_for(ctx)))
                    stages.run("split", lambda: prepare.split(ctx), pod=pod)
                    stages.run("render", lambda: prepare.render(ctx), pod=pod)
                    rendered = prepare.rendered_for(ctx)
                    stages.run("train", lambda: training.train(ctx, rendered))
                if not stages.is_done("select"):
                    stages.run("select", lambda: select(ctx))
                if not stages.is_done("harvest"):
                    stages.run("harvest", lambda: harvest(ctx))
                mark_harvested(session.remote)
            except training.PodLost:
                raise
            except Exception as exc:
                if _pod_dead(ctx):
                    raise training.PodLost(f"pod {session.pod.id} stopped during the run ({exc})") from exc
                raise
            stages.start("teardown")
    except BaseException as exc:
        provision = stages.record("provision")
        if ctx.session is None and provision is not None and provision.status == "running":
            stages.failed("provision", exc)  # no pod became ready
        raise
    finally:
        ctx.session = None
        close = getattr(api, "close", None)
        if close is not None:
            close()


def _bootstrap(ctx: RunContext, bootstrap: Any, req: TrainRequest) -> dict[str, Any]:
    models = _models(ctx)
    lock = project_lock(req, ctx.cloud)
    if lock is not None:
        _bootstrap_from_lock(ctx, lock, req)
        models = tuple(m for m in models if m not in lock.models)  # the lock's models are already in place
    ctx.say(f"bootstrapping {ctx.pod_name} (DiffusionPipe, joy-caption-batch, {', '.join(models) or 'no models'})")
    cloud = ctx.cloud
    frozen = None
    if lock is not None:
        from ..lock.lockfile import frozen_requirements
        from ..lock.rebuild import lock_cloud

        cloud, frozen = lock_cloud(ctx.cloud, lock), frozen_requirements(lock)
    report = bootstrap(ctx.remote, cloud, models=models, store=ctx.store, job_id=ctx.job_id,
                       pod_name=ctx.pod_name, frozen=frozen)
    done = [s["step"] for s in report.steps if s.get("status") == "done"]
    ctx.say(f"bootstrap: {report.seconds:.1f}s" + (f" ({', '.join(done)})" if done else " (all cached)"))
    return {"seconds": round(report.seconds, 2), "steps": report.steps, "models": list(models),
            "lock": _environment(ctx, models)}


def _bootstrap_from_lock(ctx: RunContext, lock: Any, req: TrainRequest) -> None:
    """The pod exactly as the project's pistachio.lock says (rebuild.py): pinned commits, frozen package sets,
    model files at their revisions with their sha256. Drift left afterwards stops the run unless --allow-drift."""
    from ..lock.rebuild import ModelHashMismatchError, RebuildError, bootstrap_from_lock

    ctx.say(f"bootstrapping {ctx.pod_name} from pistachio.lock ({lock.digest()[:12]})")
    try:
        bootstrap_from_lock(ctx.remote, ctx.cloud, lock, store=ctx.store, job_id=ctx.job_id, pod_name=ctx.pod_name,
                            pod_image=ctx.session.pod.image if ctx.session else None)
    except ModelHashMismatchError:
        raise
    except RebuildError as exc:
        if not req.allow_drift:
            raise RebuildError(exc.cause, "fix it, or train on the drift with --allow-drift (recorded in the "
                                          "report)") from None
        ctx.store.add_event(ctx.job_id, "allowed_drift", {"why": exc.cause})
        ctx.note(f"trained on drift from pistachio.lock (--allow-drift): {exc.cause}")


def _environment(ctx: RunContext, models: tuple[str, ...]) -> dict[str, Any]:
    """The environment the job runs in (rebuild.py): its lock digest and pins in state and report, the full lock
    as runs/<job>/<stamp>/pistachio.lock (`rebuild --lock` of it recreates the pod), and drift from the project's
    pistachio.lock when there is one."""
    from ..lock.rebuild import current_lock_summary

    project_lock = ctx.run_folder.parents[2] / "pistachio.lock"  # <base_dir>/runs/<job>/<stamp>
    summary = current_lock_summary(ctx.remote, ctx.cloud, models=models, gpu_class=ctx.gpu_class,
                                   pod_image=ctx.session.pod.image, project_lock=project_lock,
                                   save_to=ctx.run_folder / "pistachio.lock")
    ctx.store.add_event(ctx.job_id, "lock", summary)
    drift = (summary.get("project_lock") or {}).get("drift")
    if drift:
        ctx.note(f"the pod differs from {project_lock} in {len(drift)} item(s) (first: {drift[0]}); "
                 "`pistachio-infra rebuild` makes a pod exactly as the lock says")
    return summary


def _pod_dead(ctx: RunContext) -> bool:
    from ..pods.lifecycle import DEAD
    from ..runpod.port import RunPodApiError

    if ctx.session is None:
        return False
    try:
        pod = ctx.session.lifecycle.api.get_pod(ctx.session.pod.id)
    except RunPodApiError:
        return False
    return pod is None or pod.status in DEAD
