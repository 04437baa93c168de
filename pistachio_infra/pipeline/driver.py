"""The stage machine of one training job (one character LoRA):

preflight → provision → bootstrap → upload → caption → split → render → train → select → harvest → teardown →
install → verify (samples through a ComfyUI, planned before renting; --no-verify) → report → publish.

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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config.project import Job, Project
from ..errors import CloudError, ConfigError, PistachioError
from ..state import Store
from .context import PodRequest, RunContext
from .results import Event, HarvestDone, InstallDone, ReportDone, SelectDone
from .stages import Stages
from .table import TABLE, Row, Where
from .table import row as table_row

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
    detach: bool = False  # return once the pod's supervisor runs (needs a durable destination)
    verify: bool = True  # render samples with and without the LoRA after install (--no-verify: skip)
    verify_on_pod: bool = False  # when no ComfyUI is ready, rent a ComfyUI pod for them (its rent + ~21 GB download)
    # called after preflight, before anything is rented, with (classes, cloud, store); raises to rent nothing
    # (commands/train.py: print the plan and ask, confirm.py)
    confirm: Callable[[tuple[str, ...], Any, Store], None] | None = None


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
    key = _lock_key(name, project)
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


def _lock_key(name: str, project: str) -> str:
    return f"{name}-{hashlib.sha256(project.encode()).hexdigest()[:12]}" if project else name


def client_running(name: str, project: str = "") -> bool:
    """Whether a client process on this machine holds the job's lock. The OS releases the lock of a process that
    died (SIGKILL, a closed laptop), so a job recorded as running whose lock is free has no client."""
    from filelock import FileLock, Timeout

    from ..paths import state_dir

    path = state_dir() / "locks" / f"{_lock_key(name, project)}.lock"
    if not path.is_file():
        return False
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


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
        render_job(job, cls, WorkspaceLayout(), train_images=dataset.sizes())
    if job.wandb_enabled:
        get_secret("WANDB_API_KEY", required=True)
    if req.project is not None and req.project.project.hf_namespace:
        get_secret("HF_TOKEN", required=True)  # publishing needs it: refused before any pod exists
    cloud = resolve_cloud()  # RUNPOD_API_KEY (or the sandbox)
    project_lock(req, cloud)
    if job.budget_usd:
        _check_budget(job, classes, cloud, dataset.sizes())
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


def minimum_usd(job: Job, classes: tuple[str, ...], cloud: Any, train_images: Any) -> float | None:
    """The least any run of `job` can cost: provision + cold bootstrap + model load + one eval cadence of steps,
    all at the fastest times the cost model knows, on the cheapest offer of its classes (None: no prices)."""
    from ..campaign.costmodel import load_timings
    from ..pods.offers import live_offers
    from ..runpod import connect

    api = connect(cloud)
    try:
        offers = [o for o in live_offers(api, classes) if o.price_per_hr]
    finally:
        api.close()
    if not offers:
        return None
    timings = load_timings(cloud.name)
    fixed = timings.provision_s[0] + timings.bootstrap_cold_s[0] + timings.train_fixed_s[0]
    every = cadence_steps(job, train_images)
    return min(o.price_per_hr * (fixed + every * timings.step_band(o.gpu_class)[0]) / 3600 for o in offers)


def _check_budget(job: Job, classes: tuple[str, ...], cloud: Any, train_images: Any) -> None:
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


def cadence_steps(job: Job, train_images: Any) -> int:
    """`train_images`: name -> (width, height) of the train split (or a count of square images)."""
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


def _unfinished_run(req: TrainRequest, store: Store, cloud: Any) -> dict | None:
    last = store.latest_job(req.job.name, cloud=cloud.name, campaign=req.campaign, project=project_key(req))
    return last if last is not None and last["status"] != "done" else None


def _resumes(req: TrainRequest, last: dict | None, fingerprint: str) -> bool:
    return last is not None and not req.restart and last["spec"].get("fingerprint") == fingerprint


def _rented_already(req: TrainRequest, store: Store, cloud: Any, fingerprint: str) -> str | None:
    """The live pod a resumed run re-attaches to, if any: then nothing new is rented and there is nothing to ask."""
    last = _unfinished_run(req, store, cloud)
    if not _resumes(req, last, fingerprint) or not store.pods(live_only=True, job_id=last["id"]):
        return None
    from ..pods import PodLifecycle
    from ..runpod import connect

    api = connect(cloud)
    try:
        return PodLifecycle(api, store, cloud).reusable(last["id"])
    finally:
        api.close()


def _open_run(req: TrainRequest, store: Store, cloud: Any, fingerprint: str, console: Any) -> tuple[int, dict]:
    cloud_name = cloud.name
    last = _unfinished_run(req, store, cloud)
    if last is not None:
        if _resumes(req, last, fingerprint):
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

    t0 = time.time()
    console.print(f"[bold]{req.job.name}[/bold]: preflight", highlight=False)
    dataset, cloud, classes, fingerprint = preflight(req)
    if req.confirm is not None:
        live = _rented_already(req, store, cloud, fingerprint)
        if live is None:
            req.confirm(classes, cloud, store)
        else:
            console.print(f"  {live} is already rented for this run: re-attaching, nothing new to confirm",
                          highlight=False)
    job_id, spec = _open_run(req, store, cloud, fingerprint, console)
    stages = Stages(store, job_id, lambda m: console.print(f"  {m}", highlight=False, soft_wrap=True))
    ctx = RunContext(
        job=req.job, project=req.project, job_id=job_id, store=store, cloud=cloud, console=console, stages=stages,
        dataset=dataset, run_folder=Path(spec["run_folder"]),
        work_dir=state_dir() / "work" / f"{req.job.name}-{job_id}",
        started=datetime.strptime(spec["stamp"], RUN_STAMP).replace(tzinfo=UTC),
        gpu_classes=classes, recaption=req.recaption, preflight_s=time.time() - t0,
        pod_request=PodRequest(max_hours=req.max_hours, volume=req.volume, network_volume=req.network_volume),
        project_lock=project_lock(req, cloud), allow_drift=req.allow_drift, detach=req.detach,
    )
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    from .verify import plan_for, record_plan

    ctx.verify_plan = plan_for(req.job, req.project, cloud, classes, req.verify, req.verify_on_pod)
    for warning in dataset.warnings:
        ctx.say(f"[yellow]warning:[/yellow] {warning}")
    ctx.say(f"preflight ok: {len(dataset.usable)} images ({len(dataset.train)} train / {len(dataset.eval)} eval), "
            f"GPU {' → '.join(classes)}")
    from .detach import Detached
    from .publish import destination

    repo_id = destination(ctx)
    if repo_id:  # the pod's supervisor runs these rows, and honours their pause points itself
        stages.pod_holds = {r.name for r in TABLE if r.supervised}
    if req.detach and not repo_id:
        raise ConfigError("--detach needs a durable destination for the LoRA (nothing was rented)",
                          "set project.hf_namespace in pistachio.toml, or train attached (without --detach)")
    ctx.say(f"durable result: the private HF repo {repo_id}; after the upload the pod's supervisor runs the rest "
            "(Ctrl-C detaches)" if repo_id else
            "no durable destination (set project.hf_namespace in pistachio.toml): the LoRA lives on this "
            "machine only, so stay attached until the run ends")
    record_plan(ctx)
    try:
        _drive(ctx)
    except Detached:
        store.add_event(job_id, Event.SUPERVISOR, {"detached": True})
        raise
    except KeyboardInterrupt:
        store.finish_job(job_id, "cancelled", {"error": "interrupted"})
        _cleanup(ctx)
        raise
    except BaseException as exc:
        store.finish_job(job_id, "failed", {"error": str(exc)[:500]})
        _cleanup(ctx)
        _point_at_logs(ctx, exc)
        raise
    if ctx.stuck is not None:  # the work is done and installed: say plainly what still bills
        done = stages.get(InstallDone)
        where = done.installed if done else None
        store.finish_job(job_id, "failed", {"error": str(ctx.stuck)[:500], "lora": where})
        raise PistachioError(f"the LoRA is installed ({where}), but {ctx.stuck.cause}",
                             f"{ctx.stuck.fix}; then rerun the same command to finish the report") from None
    chosen, harvested = stages.get(SelectDone), stages.get(HarvestDone)
    installed, report = stages.get(InstallDone), stages.get(ReportDone)
    assert chosen and harvested and installed and report, "the table has select, harvest, install and report"
    store.finish_job(job_id, "done", {"report": report.path, "lora": harvested.path, "billed_usd": report.billed_usd})
    return TrainResult(
        job_id=job_id, run_folder=ctx.run_folder, report=Path(report.path), lora=Path(harvested.path),
        installed=installed.installed, verdict=chosen.verdict, step=chosen.step, billed_usd=report.billed_usd,
        notes=ctx.notes,
    )


def _point_at_logs(ctx: RunContext, exc: BaseException) -> None:
    """A failure's one line ends with the log file that explains it (copied off the pod before teardown)."""
    from .podlogs import failed_log, logs_dir

    log = failed_log(ctx)
    if isinstance(exc, PistachioError) and log is not None:
        exc.fix = f"{exc.fix}; log: {log}" if exc.fix else f"log: {log}"
        exc.args = (exc.one_line(),)
        ctx.say(f"logs of the failed run: {logs_dir(ctx.run_folder)}")


def _drive(ctx: RunContext) -> None:
    """Walk the stage table; a pod lost on the way (preempted, stopped) is replaced and the walk goes on."""
    from .training import PodLost

    lost = 0
    while True:
        try:
            with ExitStack() as hold:
                ctx.pod_hold = hold
                try:
                    _walk(ctx)
                except PodLost:
                    raise
                except Exception:
                    from .podlogs import keep_logs

                    keep_logs(ctx)  # before the hold ends the pod: a failure's logs are what explains it
                    raise
            return
        except PodLost as exc:
            from .detach import adopt_published

            if adopt_published(ctx):  # the pod's supervisor published, then released the pod: nothing was lost
                continue
            lost += 1
            ctx.store.add_event(ctx.job_id, Event.POD_LOST, {"why": str(exc)})
            if lost > MAX_LOST_PODS:
                raise CloudError(f"{lost} pods were lost during this run (last: {exc})",
                                     "use an on-demand pod (interruptible = false) or retry later") from None
            ctx.note(f"{exc}: renting a new pod and resuming")
        finally:
            ctx.pod_hold = None


def _walk(ctx: RunContext) -> None:
    """The one driver loop: every row of the table in order. Pod rows run on the session `provision` opened (set-up
    rows only while the training is ahead); `teardown` ends it."""
    stages = ctx.stages
    for row in TABLE:
        if ctx.stuck is not None and row.name != "install":
            continue  # a pod still bills: install the LoRA now, and report once `down` has ended the bill
        if row.name == "provision":
            if _pod_needed(ctx):
                _on_pod(ctx, row)
        elif row.where is Where.POD and not stages.is_done("train"):
            _on_pod(ctx, row)
        elif row.per_pod:
            continue  # pod set-up is needed only while the training is ahead
        elif not stages.is_done(row.name):
            if row.where is Where.POD:
                _on_pod(ctx, row)
            elif row.name == "teardown":
                _teardown(ctx, row)
            else:
                stages.run(row.name, lambda row=row: row.run(ctx))


def _teardown(ctx: RunContext, row: Row) -> None:
    """A pod that will not terminate does not cost the work: the harvested LoRA is still installed and reported,
    and the run then ends saying plainly which pod may still bill (see _run)."""
    from ..pods.session import TerminateFailed

    try:
        ctx.stages.run(row.name, lambda: row.run(ctx))
    except TerminateFailed as exc:
        ctx.stuck = exc


def _on_pod(ctx: RunContext, row: Row) -> None:
    from .podphase import pod_dead
    from .training import PodLost

    try:
        ctx.stages.run(row.name, lambda: row.run(ctx), pod=ctx.pod_name if row.per_pod else None)
    except PodLost:
        raise
    except Exception as exc:
        if ctx.session is not None and pod_dead(ctx):
            raise PodLost(f"pod {ctx.session.pod.id} stopped during the run ({exc})") from exc
        raise


def _pod_needed(ctx: RunContext) -> bool:
    """Whether a pod must be rented: the training is ahead, or the chosen LoRA is neither harvested nor mirrored."""
    from .detach import adopt_published
    from .harvest import mirrored, published

    if ctx.session is not None:
        return False
    adopt_published(ctx)  # a supervised run whose pod published and ended: no pod needed
    if not ctx.stages.is_done("train"):
        return True
    return not ctx.stages.is_done("harvest") and not mirrored(ctx) and not published(ctx)


def _cleanup(ctx: RunContext) -> None:
    """After a failure or Ctrl-C: the teardown row (end the session, terminate the job's live pods)."""
    from ..signals import shielded

    with shielded("terminating the job's pods"):
        if not ctx.stages.is_done("teardown"):
            ctx.stages.run("teardown", lambda: table_row("teardown").run(ctx))

