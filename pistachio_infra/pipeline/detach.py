"""The client's side of the pod's supervisor (pods/supervisor.py): when the job has a durable destination, the
`train` row launches the supervisor on the pod (or re-attaches to it) and from then on only watches.

- launch: the supervisor's zipapp (built from our own modules, nothing else) and its plan (no secrets) go to the
  pod; HF_TOKEN and WANDB_API_KEY reach it only through the detached job's environment.
- watch: the supervisor's state file is read over SSH and shown as the same live progress as the client-driven
  run; the rows it finishes (table.py `supervised`: train, select, publish) are recorded in the state store.
- Ctrl-C detaches: the pod finishes and publishes on its own. A second Ctrl-C within a few seconds (or `down`)
  stops the pod and tears down. `train JOB --detach` returns as soon as the supervisor runs.
- a published result of this very run (its `pistachio_result.json` in the HF repo) is adopted without a pod: a
  rerun after any kill installs it instead of training again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import signal
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from ..errors import PistachioError
from ..settings import get_settings
from .context import RunContext
from .publish import BASE_MODEL, destination
from .results import CaptionDone, Event, PublishDone, SelectDone, SplitDone, StageResult, TrainDone, load
from .table import row

SUPERVISOR_JOB = "supervisor"
ZIPAPP = "supervisor.pyz"
# Modules the supervisor imports, shipped as they are (package root relative); the package __init__ files of
# pipeline/ and pods/ are replaced by empty ones (theirs import the client's dependencies).
SHIPPED = ("__init__.py", "errors.py", "pods/supervisor.py", "pipeline/trainlog.py", "pipeline/captioncheck.py",
           "pipeline/publish.py", "pipeline/results.py", "dataset/split.py", "selection/__init__.py",
           "selection/choose.py", "selection/tbevents.py")
STUBS = ("pipeline/__init__.py", "pods/__init__.py", "dataset/__init__.py")


SUPERVISED: dict[str, type[StageResult]] = {"caption": CaptionDone, "split": SplitDone, "train": TrainDone,
                                             "select": SelectDone, "publish": PublishDone}


class Detached(Exception):
    """The client stopped watching; the pod's supervisor finishes, publishes and terminates the pod on its own."""

    def __init__(self, repo_id: str, job: str, pod: str | None, why: str) -> None:
        self.repo_id, self.job, self.pod, self.why = repo_id, job, pod, why
        super().__init__(why)

    def lines(self) -> list[str]:
        return [self.why,
                "the pod finishes, publishes and shuts itself down on its own",
                f"  follow:  pistachio-infra train {self.job}  (or: pistachio-infra logs {self.pod} --job supervisor)",
                f"  result:  pistachio-infra pull {self.job}   (from {self.repo_id}, renting nothing)",
                f"  stop it: pistachio-infra down {self.pod}"]


class SupervisorError(PistachioError):
    pass


def enabled(ctx: RunContext) -> bool:
    """The run is supervised on the pod when its result has somewhere durable to go (the HF repo)."""
    return destination(ctx) is not None


def supervised(store: Any, job_id: int) -> bool:
    """Whether the job's pod runs a supervisor (launched by a client): its pod is in use without a client."""
    return any(e["kind"] == Event.SUPERVISOR and e.get("launched") for e in store.events(job_id))


# --- launching ----------------------------------------------------------------------------------------------

def build_zipapp(dest: Path) -> Path:
    """The supervisor as one file runnable by the pod's python3 (`python3 supervisor.pyz plan.json`)."""
    root = Path(__file__).resolve().parents[1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in SHIPPED:
            zf.write(root / rel, f"pistachio_infra/{rel}")
        for rel in STUBS:
            zf.writestr(f"pistachio_infra/{rel}", "")
        zf.writestr("__main__.py", "import sys\nfrom pistachio_infra.pods.supervisor import main\nsys.exit(main())\n")
    tmp.replace(dest)
    return dest


def pod_dir(ctx: RunContext) -> str:
    return f"{ctx.remote.workspace}/.pistachio/supervisor"


def plan(ctx: RunContext) -> dict[str, Any]:
    from ..pods.layout import EVAL_NAME
    from ..pods.watchdog import files_for
    from .prepare import rendered_for
    from .table import TABLE
    from .training import _recorded_run

    rendered = rendered_for(ctx)
    layout, job = ctx.job_layout, ctx.job
    caption = _caption_plan(ctx, rendered)
    files = files_for(ctx.remote)
    cadence = rendered.cadence
    settings = (("rank", job.rank), ("learning rate", job.lr), ("epochs", job.epochs), ("max steps", job.max_steps),
                ("resolutions", job.resolutions), ("checkpoints saved", job.checkpoints), ("GPU", ctx.gpu_class),
                ("seed", job.seed), ("eval split", job.eval_split))
    volume_dir = None
    if ctx.session is not None and ctx.session.pod.network_volume_id:  # RunPod mounts it at the workspace
        volume_dir = f"{ctx.remote.workspace}/results/{job.name}/{ctx.started.strftime('%Y%m%d_%H-%M-%S')}"
    return {
        "job": job.name, "job_id": ctx.job_id, "stamp": ctx.started.isoformat(),
        "campaign": (ctx.store.job(ctx.job_id) or {}).get("campaign"),  # a campaign adopts its published results
        "stages": [r.name for r in TABLE if r.supervised],
        "state_file": f"{pod_dir(ctx)}/state.json",
        "jobs_dir": str(ctx.remote.jobs_dir),
        "poll_s": get_settings().train_poll_s,
        "markers": {"finished_marker": str(files.finished_marker), "harvested_marker": str(files.harvested_marker),
                    "release_marker": str(files.release_marker)},
        "eval_name": EVAL_NAME,
        "caption": caption,
        "train": {"argv": list(rendered.train_argv), "cwd": rendered.train_cwd, "env": dict(rendered.train_env),
                  "output_dir": str(layout.output_dir), "total": cadence.estimated_steps if cadence else 0,
                  "run": _recorded_run(ctx)},
        "publish": {
            "repo_id": destination(ctx), "endpoint": ctx.cloud.hf_endpoint, "volume_dir": volume_dir,
            "staging": f"{pod_dir(ctx)}/publish", "config_dir": str(layout.config_dir),
            "caption_dirs": [str(layout.train_dir), str(layout.eval_dir)],
            "card": {"job": job.name, "character": job.character, "trigger": job.trigger, "base_model": BASE_MODEL,
                     "settings": [[k, str(v)] for k, v in settings if v is not None]},
        },
    }


def _caption_plan(ctx: RunContext, rendered: Any) -> dict[str, Any]:
    """What the supervisor's caption and split stages need: the captioner's command lines (first pass and the
    one-per-batch retry, as caption.py runs them) and the split's inputs."""
    from ..config.render import joycaption_argv
    from ..dataset.scan import MIN_IMAGES
    from ..pods.bootstrap import joycaption_python
    from .caption import user_captions

    layout = ctx.job_layout
    names = [i.name for i in ctx.dataset.usable]
    keep_user = user_captions(ctx)
    python = joycaption_python(str(ctx.remote.workspace))
    retry_list = layout.config_dir / "caption-retry-filelist.txt"
    argv = {batch: [*joycaption_argv({**rendered.joycaption, "batch_processing_count": batch}, python=python,
                                     filelist=filelist), "--print-captioning-status"]
            for batch, filelist in ((int(rendered.joycaption["batch_processing_count"]), layout.caption_filelist),
                                    (1, retry_list))}
    first, retry = argv.values() if len(argv) == 2 else (next(iter(argv.values())),) * 2
    return {"names": names, "need": [n for n in names if n not in keep_user], "trigger": ctx.job.trigger,
            "images_dir": str(layout.images_dir), "argv": first, "retry_argv": retry,
            "filelist": str(layout.caption_filelist), "retry_filelist": str(retry_list),
            "env": {**rendered.joycaption_env, "HF_ENDPOINT": ctx.cloud.hf_endpoint},
            "cwd": str(rendered.joycaption["workdir"]), "min_images": MIN_IMAGES, "seed": ctx.job.seed,
            "eval_split": ctx.job.eval_split, "train_dir": str(layout.train_dir), "eval_dir": str(layout.eval_dir)}


def launch(ctx: RunContext) -> None:
    from ..credentials import get_secret
    from ..pods.scripts import write_text_command
    from .stages import PAUSE_ENV

    remote, folder = ctx.remote, pod_dir(ctx)
    app = build_zipapp(ctx.work_dir / ZIPAPP)
    remote.run(f"mkdir -p -- {shlex.quote(folder)}", timeout=60)
    remote.put_tree(app.parent, folder, progress=False, include=lambda rel: rel == ZIPAPP)
    remote.run(write_text_command(f"{folder}/plan.json", json.dumps(plan(ctx), indent=1)), timeout=60)
    env = {"HF_TOKEN": get_secret("HF_TOKEN", required=True) or "", "PYTHONUNBUFFERED": "1"}
    if ctx.job.wandb_enabled:
        env["WANDB_API_KEY"] = get_secret("WANDB_API_KEY", required=True) or ""
    if ctx.cloud.hf_token:  # the model host's token, for the captioner's downloads
        env["PISTACHIO_CAPTION_HF_TOKEN"] = ctx.cloud.hf_token
    if get_settings().pause_at:  # the supervisor holds at the points of the rows it runs (tests)
        env[PAUSE_ENV] = get_settings().pause_at
    remote.start_detached(SUPERVISOR_JOB, f"exec python3 {ZIPAPP} plan.json", env=env, cwd=folder)
    ctx.store.add_event(ctx.job_id, Event.SUPERVISOR, {"pod": ctx.pod_name, "launched": True})
    from .table import TABLE

    ctx.say(f"the pod's supervisor runs the rest on {ctx.pod_name}: "
            + " → ".join(r.name for r in TABLE if r.supervised) + " → shut down")


def read_state(ctx: RunContext) -> dict[str, Any] | None:
    res = ctx.remote.run(f"cat -- {shlex.quote(pod_dir(ctx) + '/state.json')} 2>/dev/null", check=False, timeout=60)
    try:
        return json.loads(res.stdout) if res.stdout.strip() else None
    except ValueError:
        return None  # replaced while read: the next poll gets it


# --- recording what the supervisor did ---------------------------------------------------------------------

def _record(ctx: RunContext, state: dict[str, Any], pod: str | None) -> None:
    """The supervisor's progress into the state store: its stages (started, done), launches and run."""
    store, stages = ctx.store, ctx.stages
    events = store.events(ctx.job_id)
    launched = {e.get("launched_at") for e in events if e["kind"] == Event.TRAIN_LAUNCH}
    for launch_rec in state.get("launches", []):  # each launch once, whoever saw it first (watch or pull)
        if launch_rec.get("at") not in launched:
            store.add_event(ctx.job_id, Event.TRAIN_LAUNCH, {"pod": pod, "resume": launch_rec.get("resume"),
                                                             "supervisor": True, "launched_at": launch_rec.get("at")})
    run = state.get("run")
    if run and not any(e["kind"] == Event.TRAIN_RUN and e.get("name") == run for e in events):
        store.add_event(ctx.job_id, Event.TRAIN_RUN, {"name": run, "pod": pod})
    stage = state.get("stage")
    if stage in SUPERVISED and not any(e["kind"] == Event.STAGE and e.get("supervisor") and e.get("stage") == stage
                                       and e.get("pod") == pod for e in events):
        if not stages.is_done(stage, pod):
            store.stage_started(ctx.job_id, stage)
        store.add_event(ctx.job_id, Event.STAGE, {"stage": stage, "supervisor": True, "pod": pod})
    results = state.get("results", {})
    for name, kind in SUPERVISED.items():
        if name in results and not stages.is_done(name, pod):
            if stages.record(name) is None:
                store.stage_started(ctx.job_id, name)
            result = load(kind, results[name])
            if name == "caption":  # the captions reach this machine with the published result
                result = dataclasses.replace(result, folder=str(ctx.captions_dir))
            if row(name).per_pod:
                result = dataclasses.replace(result, pod=pod)
            stages.done(name, result)


def adopt_published(ctx: RunContext) -> bool:
    """When this run's result is published (a supervisor of this job ran), record train/select/publish from it:
    nothing is trained again and no pod is needed. False when it is not (yet) there."""
    if ctx.stages.is_done("publish") or not enabled(ctx):
        return False
    if not any(e["kind"] == Event.SUPERVISOR for e in ctx.store.events(ctx.job_id)):
        return False
    result = published_result(ctx)
    if result is None or result.get("job_id") != ctx.job_id or result.get("stamp") != ctx.started.isoformat():
        return False
    results = {k: result[k] for k in ("caption", "split", "train", "select") if k in result}
    state = {"launches": result.get("launches", []), "run": result["train"]["run"],
             "results": {**results, "publish": {"repo": destination(ctx)}}}
    _record(ctx, state, None)
    ctx.say(f"the pod's supervisor finished and published this run to {destination(ctx)}: installing it")
    return True


def published_result(ctx: RunContext) -> dict[str, Any] | None:
    from huggingface_hub import hf_hub_download

    from ..credentials import get_secret
    from ..pods.supervisor import RESULT_FILE

    repo_id = destination(ctx)
    assert repo_id is not None
    try:
        path = hf_hub_download(repo_id, RESULT_FILE, token=get_secret("HF_TOKEN"), endpoint=ctx.cloud.hf_endpoint,
                               local_dir=str(ctx.work_dir / "published-result"))
        return json.loads(Path(path).read_text())
    except Exception:  # not published (yet), not readable: the run goes on with a pod
        return None


# --- watching -----------------------------------------------------------------------------------------------

def supervise(ctx: RunContext, stage: str, *, detach: bool) -> StageResult:
    """The first supervised row not done yet (caption, split or train): launch (or re-attach to) the pod's
    supervisor and watch it to its end; every supervised row it finishes is recorded, `stage`'s result returned.
    The configs are rendered first (the render row, before the hand-over: the supervisor cannot render)."""
    from .table import row as table_row

    if not ctx.stages.is_done("render", ctx.pod_name):
        ctx.stages.run("render", lambda: table_row("render").run(ctx), pod=ctx.pod_name)
    job = ctx.remote.job(SUPERVISOR_JOB)
    if job is not None and job.running:
        ctx.say(f"re-attaching to the supervisor running on {ctx.pod_name}")
        ctx.store.add_event(ctx.job_id, Event.TRAIN_REATTACH, {"pod": ctx.pod_name, "supervisor": True})
    elif job is None or job.exit_code != 0 or (read_state(ctx) or {}).get("status") != "done":
        launch(ctx)
    repo_id = destination(ctx) or ""
    if detach:
        ctx.session.detached = True
        raise Detached(repo_id, ctx.job.name, ctx.pod_name,
                       f"detached from {ctx.job.name}: its supervisor runs on {ctx.pod_name}")
    try:
        state = _watch(ctx)
    except KeyboardInterrupt:
        if _second_interrupt(ctx):
            raise
        ctx.session.detached = True
        raise Detached(repo_id, ctx.job.name, ctx.pod_name, "Ctrl-C: detached (the pod keeps going)") from None
    train = state["results"]["train"]
    ctx.say(f"training complete: {train['steps']} steps, {len(train['saved'])} LoRA checkpoints")
    result = ctx.stages.get(SUPERVISED[stage]) if not row(stage).per_pod else None
    return result or load(SUPERVISED[stage], state["results"][stage])


def _second_interrupt(ctx: RunContext) -> bool:
    """After a first Ctrl-C: True when a second one comes within the grace time (stop and tear down)."""
    grace = get_settings().detach_grace_s
    if threading.current_thread() is not threading.main_thread():
        return False
    again = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: again.set())
    ctx.store.add_event(ctx.job_id, Event.SUPERVISOR, {"detaching": True, "grace_s": grace})
    try:
        ctx.console.print(f"\n  detaching: the pod finishes and publishes on its own. Ctrl-C again within "
                          f"{grace:g}s stops it and tears down.", highlight=False)
        again.wait(grace)
    finally:
        signal.signal(signal.SIGINT, previous)
    return again.is_set()


def _watch(ctx: RunContext) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    from ..remote.channel import CONNECTION_ERRORS
    from .training import _reattach

    poll, reconnect_s = get_settings().train_poll_s, get_settings().reconnect_s
    shown = 0
    columns = (TextColumn("  {task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("epoch {task.fields[epoch]}"), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())
    with Bar(*columns, console=ctx.console, transient=False) as bar:
        task = bar.add_task("supervisor", total=None, stage="training", epoch=1, loss="—")
        while True:
            try:
                job = ctx.remote.job(SUPERVISOR_JOB)
                state = read_state(ctx)
            except CONNECTION_ERRORS:
                _reattach(ctx, time.monotonic() + reconnect_s)  # PodLost when the pod is gone: see adopt_published
                continue
            if state is not None:
                _record(ctx, state, ctx.pod_name)
                for event in state.get("events", [])[shown:]:
                    bar.console.print(f"  [dim]pod:[/dim] {event['message']}", highlight=False, soft_wrap=True)
                shown = len(state.get("events", []))
                loss = state.get("loss")
                bar.update(task, completed=state.get("step", 0), total=state.get("total") or None,
                           stage=state.get("stage") or "starting", epoch=state.get("epoch", 1),
                           loss=f"{loss:.4f}" if isinstance(loss, float) else "—")
                if state.get("status") == "done":
                    return state
            if job is not None and not job.running:
                final = read_state(ctx) or {}
                if final.get("status") == "done":
                    _record(ctx, final, ctx.pod_name)
                    return final
                raise SupervisorError(
                    f"the supervisor on pod {ctx.pod_name} stopped: {final.get('error') or f'exit {job.exit_code}'}",
                    "read `pistachio-infra logs POD --job supervisor`; rerunning the same command resumes it")
            time.sleep(poll)


def harvest_published(ctx: RunContext, dest: Path, config_dest: Path) -> str:
    """The chosen adapter from the job's HF repo (the pod may be gone); its event files into the local mirror (the
    report's selection and plot read them). Returns the source's description."""
    import shutil

    from ..credentials import get_secret
    from .publish import CONFIG_FILE, pull

    repo_id = destination(ctx)
    assert repo_id is not None
    folder = ctx.work_dir / "published"
    lora = pull(repo_id, folder, token=get_secret("HF_TOKEN"), endpoint=ctx.cloud.hf_endpoint)
    shutil.copyfile(lora, dest)
    if (folder / CONFIG_FILE).is_file():
        shutil.copyfile(folder / CONFIG_FILE, config_dest)
    if (folder / "captions").is_dir():  # for review, and for a new pod
        ctx.captions_dir.mkdir(parents=True, exist_ok=True)
        for txt in (folder / "captions").glob("*.txt"):
            shutil.copyfile(txt, ctx.captions_dir / txt.name)
    trained = ctx.stages.get(TrainDone)
    if trained is not None and (folder / "events").is_dir():
        mirror = ctx.mirror_dir / trained.run
        mirror.mkdir(parents=True, exist_ok=True)
        for events in (folder / "events").iterdir():
            with contextlib.suppress(OSError):
                shutil.copyfile(events, mirror / events.name)
    return f"the HF repo {repo_id}"


def publish_report(ctx: RunContext, report: Path) -> None:
    """What only the client has, added to the job's repo after the pod published and ended: report.md, the loss plot
    (no matplotlib on the pod), the verify stage's samples and contact sheet, and the card that shows them."""
    import shutil

    from huggingface_hub import HfApi

    from ..credentials import get_secret
    from .publish import card_facts, check_no_secret, model_card
    from .results import SelectDone

    repo_id = destination(ctx)
    run = report.parent
    staging = ctx.work_dir / "publish-extras"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(report, staging / "report.md")
    for name in ("loss.png", "samples.png"):
        if (run / name).is_file():
            shutil.copyfile(run / name, staging / name)
    if (run / "samples").is_dir():
        shutil.copytree(run / "samples", staging / "samples")
    chosen = ctx.stages.get(SelectDone)
    if chosen is not None:
        (staging / "README.md").write_text(model_card(card_facts(ctx, chosen)))
    token = get_secret("HF_TOKEN")
    try:
        check_no_secret(staging, [token] if token else [])
        HfApi(endpoint=ctx.cloud.hf_endpoint, token=token).upload_folder(
            folder_path=str(staging), repo_id=repo_id, commit_message=f"{ctx.job.name}: the run's report")
    except Exception as exc:  # the LoRA is safe there already; only the report copy is missing
        ctx.note(f"could not add report.md to {repo_id} ({type(exc).__name__}); it is at {report}")
