"""The train stage: launch DiffusionPipe detached, follow it (re-attaching after SSH drops and client restarts),
show progress, mirror what a resume needs, and notice when the pod itself is lost.

Launch: `NCCL_P2P_DISABLE=1 NCCL_IB_DISABLE=1 deepspeed --num_gpus=1 train.py --deepspeed --config <toml>` in the
diffusion-pipe folder, as a detached job named "train"; WANDB_API_KEY travels in the job's environment only (the
training TOML, which DiffusionPipe copies into every checkpoint folder, never holds it).

Resume: the run dir name is recorded as soon as it appears. A later attempt (client restart, new pod after
preemption) re-attaches to a training that still runs; otherwise it relaunches with
`--resume_from_checkpoint <run dir>` when the run dir has a DeepSpeed checkpoint (`latest` + `global_stepN/`) — on
the pod (network volume), or pushed from the local mirror. Interruptible pods without a network volume mirror the
latest checkpoint, the event files and the saved LoRAs to this machine while training (`full` sync), so a
preempted run continues on a new pod from its last checkpoint instead of step 0.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import time
from pathlib import Path

from ..config.render import RenderedConfigs
from ..credentials import get_secret, redact
from ..errors import PistachioError
from ..money import usd
from ..selection.choose import CHECKPOINT_DIR_RE, LORA_FILE
from ..settings import get_settings
from .context import RunContext
from .results import Event, TrainDone
from .stages import pause
from .trainlog import COMPLETE, Progress

TRAIN_JOB = "train"
ADAPTER_FILES = (LORA_FILE, "adapter_config.json")


class PodLost(Exception):
    """The pod stopped (preempted, exited, terminated) while a stage needed it."""


class TrainingError(PistachioError):
    pass




# --- run dir and mirror -------------------------------------------------------------------------------------

def _recorded_run(ctx: RunContext) -> str | None:
    runs = [e["name"] for e in ctx.store.events(ctx.job_id) if e["kind"] == Event.TRAIN_RUN]
    return runs[-1] if runs else None


def _list_runs(ctx: RunContext) -> set[str]:
    out = str(ctx.job_layout.output_dir)
    res = ctx.remote.run(f"mkdir -p -- {shlex.quote(out)} && ls -1 -- {shlex.quote(out)}", check=False)
    return {line.strip() for line in res.stdout.splitlines() if line.strip()}


def full_sync_needed(ctx: RunContext) -> bool:
    """Mirror checkpoints to this machine: an interruptible pod whose workspace dies with it (no network volume)."""
    pod = ctx.session.pod if ctx.session is not None else None
    return bool(ctx.job.interruptible and pod is not None and not pod.network_volume_id)


def sync(ctx: RunContext, run: str, *, full: bool) -> None:
    """Mirror the run's event files (always) and, with `full`, its latest DeepSpeed checkpoint and the saved LoRAs
    (adapter files only: never the training TOML DiffusionPipe copies next to them).

    The local `latest` is written only after its global_stepN arrived whole, so the mirror always points at a
    complete checkpoint. Files still being written (event files grow) raise TransferError: the next sync gets them.
    """
    # transfer.get_tree itself, not Remote.get_tree: a lost connection must reach follow(), which asks the API
    # whether the pod is gone (preempted) before reconnecting, instead of retrying SSH for a minute
    from ..remote.transfer import get_tree

    remote = ctx.remote
    base = f"{ctx.job_layout.output_dir}/{run}"
    local = ctx.mirror_dir / run
    if full:
        res = remote.run(f"cat -- {shlex.quote(base + '/latest')} 2>/dev/null", check=False)
        latest = res.stdout.strip()
        current = (local / "latest").read_text().strip() if (local / "latest").is_file() else None
        if latest.startswith("global_step") and latest != current:
            get_tree(remote, base, local, include=lambda rel: rel.split("/")[0] == latest, progress=False)
            (local / "latest.tmp").write_text(latest + "\n")
            (local / "latest.tmp").replace(local / "latest")
            for old in local.glob("global_step*"):
                if old.name != latest:
                    shutil.rmtree(old, ignore_errors=True)

    def include(rel: str) -> bool:
        parts = rel.split("/")
        if len(parts) == 1:
            return parts[0].startswith("events.out.tfevents")
        return full and len(parts) == 2 and bool(CHECKPOINT_DIR_RE.match(parts[0])) and parts[1] in ADAPTER_FILES

    get_tree(remote, base, local, include=include, progress=False)


def _last_eval(ctx: RunContext, run: str, eval_name: str) -> float | None:
    from ..selection.tbevents import read_scalars

    try:
        series = read_scalars(ctx.mirror_dir / run).series(f"{eval_name}/loss")
    except Exception:
        return None
    return series[-1].value if series else None


def saved_folders(ctx: RunContext, run: str) -> list[str]:
    """`stepN`/`epochN` folders of the run on the pod that hold a LoRA file."""
    base = f"{ctx.job_layout.output_dir}/{run}"
    res = ctx.remote.run(f"cd -- {shlex.quote(base)} && ls -1d -- */{LORA_FILE} 2>/dev/null", check=False)
    names = [line.split("/")[0] for line in res.stdout.splitlines() if line.strip()]
    return sorted(n for n in names if CHECKPOINT_DIR_RE.match(n))


# --- launching ----------------------------------------------------------------------------------------------

def _push_checkpoint(ctx: RunContext, run: str) -> bool:
    """Put the mirrored checkpoint of `run` onto a new pod; False when there is none."""
    local = ctx.mirror_dir / run
    if not (local / "latest").is_file():
        return False
    tag = (local / "latest").read_text().strip()
    if not (local / tag).is_dir():
        return False
    ctx.say(f"pushing the last checkpoint ({tag}) of run {run} to the new pod")
    ctx.remote.put_tree(local, f"{ctx.job_layout.output_dir}/{run}")
    return True


def _launch(ctx: RunContext, rendered: RenderedConfigs, run: str | None) -> tuple[str | None, set[str]]:
    """Start the trainer; returns (the run it resumes or None, the run folders that existed before the launch).

    The folders are listed before the trainer starts, and recorded with the launch: listed afterwards, a trainer
    that makes its folder quickly would already be among them, and its run would never be found.
    """
    from ..pods.watchdog import clear_job_markers

    remote = ctx.remote
    resume = None
    if run is not None:
        base = f"{ctx.job_layout.output_dir}/{run}"
        there = remote.run(f"test -f {shlex.quote(base + '/latest')}", check=False).exit_code == 0
        if not there:
            there = _push_checkpoint(ctx, run)
        if there:
            resume = run
        else:
            ctx.note(f"run {run} left no checkpoint to resume from: training starts again from step 0")
    argv = list(rendered.train_argv) + (["--resume_from_checkpoint", resume] if resume else [])
    env = dict(rendered.train_env)
    if ctx.job.wandb_enabled:
        env["WANDB_API_KEY"] = get_secret("WANDB_API_KEY", required=True) or ""
        env.update(wandb_env(ctx))
    clear_job_markers(remote)
    before = _list_runs(ctx) if resume is None else set()
    ctx.store.add_event(ctx.job_id, Event.TRAIN_LAUNCH,
                        {"pod": ctx.pod_name, "resume": resume, "runs_before": sorted(before)})
    remote.start_detached(TRAIN_JOB, shlex.join(argv), env=env, cwd=rendered.train_cwd)
    pause("train-launched")
    ctx.say(("resuming run " + resume if resume else "training started") + f" on {ctx.pod_name}")
    return resume, before


def _launched_before(ctx: RunContext) -> set[str] | None:
    """The run folders listed before the last launch on this pod, or None when this pod has no recorded launch."""
    launches = [e for e in ctx.store.events(ctx.job_id)
                if e["kind"] == Event.TRAIN_LAUNCH and e.get("pod") == ctx.pod_name]
    if not launches or "runs_before" not in launches[-1]:
        return None
    return set(launches[-1]["runs_before"])


# --- following ----------------------------------------------------------------------------------------------

def _check_pod(ctx: RunContext) -> None:
    """Raise PodLost when the API says the pod is not running any more."""
    from ..pods.lifecycle import DEAD
    from ..runpod.port import RunPodApiError

    try:
        pod = ctx.session.lifecycle.api.get_pod(ctx.session.pod.id)
    except RunPodApiError:
        return
    if pod is None or pod.status in DEAD:
        status = "gone" if pod is None else pod.status.value
        raise PodLost(f"pod {ctx.session.pod.id} is {status}")


def _reattach(ctx: RunContext, give_up_at: float) -> None:
    """After a connection error: the pod is lost (PodLost), or reconnect, retrying until `give_up_at`."""
    from ..remote.errors import SshNotReadyError

    while True:
        _check_pod(ctx)
        try:
            ctx.remote.reconnect(timeout=min(20.0, max(1.0, give_up_at - time.monotonic())))
            ctx.store.add_event(ctx.job_id, Event.RECONNECTED, {"pod": ctx.pod_name})
            return
        except SshNotReadyError as exc:
            if time.monotonic() >= give_up_at:
                _check_pod(ctx)
                raise TrainingError(f"lost SSH to pod {ctx.pod_name} and could not reconnect",
                                    "rerun the same command: it re-attaches to the training if the pod is still up"
                                    ) from exc


def _estimate(ctx: RunContext, progress: Progress, started: float, first_step: int) -> None:
    """Record the cost estimate once, when the step rate is known: pod time so far + the rest of training."""
    if any(e["kind"] == Event.ESTIMATE for e in ctx.store.events(ctx.job_id)):
        return
    done = progress.step - first_step
    if done < max(3, progress.total // 20):
        return
    per_step = (time.monotonic() - started) / done
    remaining = max(0, progress.total - progress.step) * per_step
    pod = ctx.store.pod(ctx.session.name)
    elapsed = time.time() - (pod.created_at if pod else time.time())
    usd = ctx.session.cost_per_hr * (elapsed + remaining + 60) / 3600  # + a minute for select, harvest, teardown
    ctx.store.add_event(ctx.job_id, Event.ESTIMATE, {"usd": usd, "seconds_per_step": per_step})


PROGRESS_FILE = "progress.json"  # in the job's work dir: what `dashboard` shows of a running training


def _write_progress(ctx: RunContext, progress: Progress, run: str | None, started: float,
                    first_step: int | None) -> None:
    """Step, total, losses and pace as one small JSON file (replaced atomically) for readers in other processes."""
    per_step = None
    if first_step is not None and progress.step > first_step:
        per_step = (time.monotonic() - started) / (progress.step - first_step)
    state = {"step": progress.step, "total": progress.total, "epoch": progress.epoch,
             "loss": progress.loss if progress.loss is not None and math.isfinite(progress.loss) else None,
             "eval_loss": progress.eval_loss, "seconds_per_step": per_step, "run": run, "updated_at": time.time()}
    path = ctx.work_dir / PROGRESS_FILE
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)


def _spent(ctx: RunContext) -> float:
    pod = ctx.store.pod(ctx.session.name)
    if pod is None:
        return 0.0
    return ctx.session.cost_per_hr * max(0.0, time.time() - pod.created_at) / 3600


def follow(
    ctx: RunContext, rendered: RenderedConfigs, run: str | None, before: set[str]
) -> tuple[Progress, str, int | None]:
    """Follow the train job to its end; returns (progress, run dir name, exit code).

    With `run` None the run is the folder that is not among `before` (those listed before the launch).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    from ..remote.channel import CONNECTION_ERRORS
    from ..remote.errors import RemoteCommandError, TransferError

    remote = ctx.remote
    knobs = get_settings()
    poll, sync_every, reconnect_s = knobs.train_poll_s, knobs.train_sync_s, knobs.reconnect_s
    full = full_sync_needed(ctx)
    cadence = rendered.cadence
    progress = Progress(total=cadence.estimated_steps if cadence else 0)
    offset = 0
    last_sync = 0.0
    synced_saves = 0
    started = time.monotonic()
    first_step: int | None = None
    exit_code: int | None = None
    fmt = "{:.4f}"
    columns = (
        TextColumn("  training"), BarColumn(), MofNCompleteColumn(), TextColumn("epoch {task.fields[epoch]}"),
        TextColumn("loss {task.fields[loss]}"), TextColumn("eval {task.fields[eval]}"), TimeRemainingColumn(),
        TextColumn("${task.fields[cost]}"),
    )
    with Bar(*columns, console=ctx.console, transient=False) as bar:
        task = bar.add_task("train", total=progress.total or None, epoch=1, loss="—", eval="—", cost="0.00")
        while True:
            try:
                status = remote.job(TRAIN_JOB)
                data, offset = remote.read_log(TRAIN_JOB, offset)
                if run is None:
                    new = sorted(_list_runs(ctx) - before)
                    if new:
                        run = new[-1]
                        ctx.store.add_event(ctx.job_id, Event.TRAIN_RUN, {"name": run, "pod": ctx.pod_name})
                now = time.monotonic()
                if run is not None and (len(progress.saves) > synced_saves or now - last_sync > sync_every) and (
                    now - last_sync > min(sync_every, 5.0) or status is None or not status.running
                ):
                    # a file being written (tar: "file changed as we read it", exit 1): the next sync gets it
                    with contextlib.suppress(TransferError, RemoteCommandError):
                        sync(ctx, run, full=full)
                        progress.eval_loss = _last_eval(ctx, run, rendered.eval_name)
                    synced_saves, last_sync = len(progress.saves), now
            except CONNECTION_ERRORS:
                _reattach(ctx, time.monotonic() + reconnect_s)
                continue
            if status is None:
                raise TrainingError(f"no training job on pod {ctx.pod_name}", "rerun the same command")
            if data:
                progress.feed(data.decode("utf-8", "replace"))
                if first_step is None and progress.step:
                    first_step, started = progress.step, time.monotonic()
            if progress.wandb_url and progress.wandb_url != ctx.wandb_url:
                ctx.wandb_url = progress.wandb_url
                ctx.say(f"wandb: {progress.wandb_url}")
            if progress.step > progress.total:
                progress.total = progress.step
            if first_step is not None:
                _estimate(ctx, progress, started, first_step)
            _write_progress(ctx, progress, run, started, first_step)
            bar.update(
                task, completed=progress.step, total=progress.total or None, epoch=progress.epoch,
                loss=fmt.format(progress.loss) if progress.loss is not None and math.isfinite(progress.loss) else "—",
                eval=fmt.format(progress.eval_loss) if progress.eval_loss is not None else "—",
                cost=usd(_spent(ctx)).lstrip("$"),
            )
            if not status.running and not data:
                exit_code = status.exit_code
                break
            if not data:
                time.sleep(poll)
    if run is None:
        raise TrainingError(f"DiffusionPipe created no run folder on pod {ctx.pod_name}",
                            "read the log: pistachio-infra logs POD --job train")
    return progress, run, exit_code


def train(ctx: RunContext, rendered: RenderedConfigs) -> TrainDone:
    from ..pods.watchdog import mark_job_finished

    run = _recorded_run(ctx)
    job = ctx.remote.job(TRAIN_JOB)
    # a client killed between the launch and the run folder's recording: the launch on this pod says what predates it
    before = _launched_before(ctx) if run is None and job is not None else None
    if job is not None and job.running and (run is not None or before is not None):
        ctx.say(f"re-attaching to the training running on {ctx.pod_name}" + (f" (run {run})" if run else ""))
        ctx.store.add_event(ctx.job_id, Event.TRAIN_REATTACH, {"pod": ctx.pod_name})
    elif job is not None and job.exit_code == 0 and (run is not None or before is not None) and _completed(
        ctx, job.log_path
    ):
        ctx.say(f"training{f' of run {run}' if run else ''} already finished on {ctx.pod_name}")
    else:
        if job is not None and job.running:  # a trainer whose launch we never recorded: start clean
            ctx.remote.kill_job(TRAIN_JOB)
        run, before = _launch(ctx, rendered, run)  # run None: a fresh run, whose folder follow() finds
    progress, run, code = follow(ctx, rendered, run, before or set())
    if code is None:
        _check_pod(ctx)
        raise TrainingError(f"the training on pod {ctx.pod_name} was killed (no exit code)",
                            "rerun the same command: it resumes from the last checkpoint")
    if code != 0 or not progress.complete:
        tail = redact(" | ".join(line for line in progress.tail[-6:] if line.strip()))
        raise TrainingError(f"DiffusionPipe exited with {code} on pod {ctx.pod_name}: {tail}",
                            "fix the cause; rerunning resumes from the last checkpoint")
    sync(ctx, run, full=full_sync_needed(ctx))
    folders = saved_folders(ctx, run)
    mark_job_finished(ctx.remote)
    ctx.say(f"training complete: {progress.step} steps, {len(folders)} LoRA checkpoints")
    return TrainDone(run=run, steps=progress.step, saved=tuple(folders), wandb_url=progress.wandb_url,
                     resumed_at=progress.resumed_at)


def _completed(ctx: RunContext, log_path: str) -> bool:
    return ctx.remote.run(f"grep -qF {shlex.quote(COMPLETE)} -- {shlex.quote(log_path)}", check=False).exit_code == 0


def mirror_path(ctx: RunContext, run: str) -> Path:
    return ctx.mirror_dir / run


def wandb_env(ctx: RunContext) -> dict[str, str]:
    """What DiffusionPipe's wandb.init(project=, name=, dir=) leaves to wandb's own environment variables: the
    group (the campaign, else the job: every run of a character together) and tags (GPU class, trigger)."""
    row = ctx.store.job(ctx.job_id) or {}
    tags = [t for t in (ctx.gpu_class, ctx.job.trigger, "pistachio-infra") if t]
    return {"WANDB_RUN_GROUP": row.get("campaign") or ctx.job.name, "WANDB_TAGS": ",".join(tags)}
