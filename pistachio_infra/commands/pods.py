"""`up`, `status`, `ssh`, `logs`, `down`, `reap`: pods by hand, with the same lifecycle and teardown as jobs."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..endpoints import Cloud
    from ..runpod.port import Pod, RunPodApi
    from ..state import PodRecord, Store


def _console() -> Any:

    from ..console import make_console

    # piped (scripts, logs): no wrapping at 80 columns, so names and ids stay whole and greppable
    return make_console()


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _open() -> tuple[Cloud, RunPodApi, Store]:
    from ..endpoints import resolve_cloud
    from ..runpod import connect
    from ..state import Store

    cloud = resolve_cloud()
    return cloud, connect(cloud), Store()


# --- up ---------------------------------------------------------------------------------------------------


@click.command()
@click.option("--gpu", required=True, help="GPU class to rent (see `pistachio-infra gpus`).")
@click.option("--gpu-fallback", multiple=True, help="Classes to try, in order, when --gpu has no capacity.")
@click.option("--dc", "data_centers", multiple=True, help="Preferred data center(s), in order (default: any).")
@click.option(
    "--volume/--no-volume",
    default=None,
    help="Mount the env stack's network volume (model cache). Default: when `env up` has created one.",
)
@click.option("--max-hours", type=float, default=3.0, show_default=True, help="The watchdog terminates it then.")
@click.option(
    "--idle-minutes",
    type=float,
    default=30.0,
    show_default=True,
    help="Terminate after this long with no client attached, no job running and nobody logged in.",
)
@click.option("--model", "models", multiple=True, help="Base models to download (default: Wan 2.1 14B + JoyCaption).")
@click.option("--no-models", is_flag=True, help="Skip the base-model download.")
@click.option("--no-bootstrap", is_flag=True, help="Only rent the pod and install the watchdog.")
@click.option("--label", help="Goes into the pod's name (default: interactive, or comfyui for --role comfyui).")
@click.option(
    "--role",
    type=click.Choice(["train", "comfyui"]),
    default="train",
    show_default=True,
    help="train: DiffusionPipe + JoyCaption + base models. comfyui: ComfyUI at its pinned commit on port 8188, "
    "the project's harvested LoRAs in models/loras, and --workflow's node packs and models.",
)
@click.option(
    "--workflow",
    type=click.Path(dir_okay=False, path_type=str),
    help="--role comfyui: a ComfyUI workflow (.json/.png) whose custom nodes and models to install.",
)
@click.option(
    "--project",
    "project_path",
    type=click.Path(path_type=Path),
    help="--role comfyui: the project whose harvested LoRAs to copy (default: ./pistachio.toml when present).",
)
@click.option("--no-loras", is_flag=True, help="--role comfyui: do not copy harvested LoRAs.")
@click.option("--best", is_flag=True, help="--role comfyui: take the best-ranked hub file when several fit.")
@click.option("-y", "--yes", is_flag=True, help="Rent without asking (the plan and estimate are still printed).")
def up(
    gpu: str,
    gpu_fallback: tuple[str, ...],
    data_centers: tuple[str, ...],
    volume: bool | None,
    max_hours: float,
    idle_minutes: float,
    models: tuple[str, ...],
    no_models: bool,
    no_bootstrap: bool,
    label: str | None,
    role: str,
    workflow: str | None,
    project_path: Path | None,
    no_loras: bool,
    best: bool,
    yes: bool,
) -> None:
    """Rent a ready pod: SSH, DiffusionPipe, JoyCaption and model files (or, with --role comfyui, a running
    ComfyUI with the workflow's dependencies and the project's LoRAs), guarded by its watchdog.

    The pod keeps running after this command (that is its purpose) until `down`, or until its watchdog
    terminates it: at --max-hours, or --idle-minutes after the last client/login (a running ComfyUI counts as a
    running job, so a ComfyUI pod lasts until --max-hours or `down`).
    """
    from ..catalog import gpu_class
    from ..comfy.pod import COMFY_PORT
    from ..pods import PodSpec
    from ..pods.session import pod_session
    from ..pods.sshkeys import public_key
    from ..pods.watchdog import WatchdogPolicy

    classes = tuple(dict.fromkeys(gpu_class(n).name for n in (gpu, *gpu_fallback)))
    comfyui = role == "comfyui"
    wanted = _check_up_options(max_hours, idle_minutes, comfyui, models, no_models, no_bootstrap,
                               uses_comfy_options=bool(workflow or project_path or no_loras))
    loras = _comfy_inputs(workflow, project_path, no_loras) if comfyui else []
    policy = WatchdogPolicy.from_env(max_runtime_s=max_hours * 3600, idle_s=idle_minutes * 60)
    volume_id, volume_dc = _volume(volume)
    console = _console()
    cloud, api, store = _open()
    if comfyui and workflow:
        from ..comfy.pod import precheck

        precheck(workflow, loras, cloud, yes=best)
    from ..confirm import ask, pod_plan

    plan = pod_plan(api, classes, what=f"up ({label or ('comfyui' if comfyui else 'interactive')} pod, kept until "
                    "`down` or its watchdog)", data_centers=data_centers,
                    volume_dc=volume_dc if volume_id else None, max_hours=max_hours, store=store,
                    cloud_name=cloud.name)
    ask(plan.lines(), yes=yes, command="up", echo=lambda line: console.print(line, markup=False))
    spec = PodSpec(
        purpose="up",
        label=label or ("comfyui" if comfyui else "interactive"),
        gpu_classes=classes,
        public_key=public_key(),
        data_centers=data_centers,
        network_volume_id=volume_id,
        network_volume_dc=volume_dc,
        http_ports=(COMFY_PORT,) if comfyui else (),
    )
    t0 = time.monotonic()
    with pod_session(
        spec,
        policy=policy,
        models=None if no_bootstrap or comfyui else wanted,
        keep=True,
        cloud=cloud,
        api=api,
        store=store,
        report=lambda msg: console.print(f"  [dim]•[/dim] {msg}"),
        bootstrap_output=_bootstrap_line(console),
    ) as session:
        comfy = None
        if comfyui:
            from ..comfy.pod import prepare

            comfy = prepare(
                session,
                workflow=workflow,
                loras=loras,
                yes=best,
                say=lambda msg: console.print(f"  [dim]•[/dim] {msg}"),
                bootstrap_output=_bootstrap_line(console),
            )
        _print_ready(console, session, comfy, store, total=time.monotonic() - t0, max_hours=max_hours,
                     idle_minutes=idle_minutes, comfyui=comfyui)
    store.close()


def _check_up_options(max_hours: float, idle_minutes: float, comfyui: bool, models: tuple[str, ...], no_models: bool,
                      no_bootstrap: bool, *, uses_comfy_options: bool) -> tuple[str, ...]:
    """Refuse option combinations that make no sense, before anything costs money; the base models to install."""
    from ..catalog import base_model
    from ..errors import ConfigError
    from ..pods.bootstrap import DEFAULT_MODELS

    if max_hours <= 0:
        raise ConfigError(f"--max-hours {max_hours:g} is not positive", "give the pod's maximum runtime, e.g. 3")
    if idle_minutes <= 0:
        raise ConfigError(f"--idle-minutes {idle_minutes:g} is not positive", "give e.g. 30")
    if comfyui and (models or no_bootstrap):
        raise ConfigError(
            f"--role comfyui does not take {'--model' if models else '--no-bootstrap'}",
            "a ComfyUI pod gets its models from --workflow; drop the option",
        )
    if not comfyui and uses_comfy_options:
        raise ConfigError("--workflow, --project and --no-loras are for ComfyUI pods", "add --role comfyui")
    wanted = () if no_models or comfyui else (models or DEFAULT_MODELS)
    for name in wanted:
        base_model(name)
    return tuple(wanted)


def _comfy_inputs(workflow: str | None, project_path: Path | None, no_loras: bool) -> list[Path]:
    """A ComfyUI pod's inputs checked locally (a broken workflow is refused here); the project's harvested LoRAs."""
    from ..comfy.pod import harvested_loras
    from ..comfy.workflow import load_workflow
    from ..config.project import find_project

    if workflow:
        load_workflow(workflow)
    if no_loras:
        return []
    project = find_project(project_path)
    base = Path(project_path or ".").resolve()
    return harvested_loras(project, base if base.is_dir() else base.parent)


def _print_ready(console: Any, session: Any, comfy: Any, store: Any, *, total: float, max_hours: float,
                 idle_minutes: float, comfyui: bool) -> None:
    """What `up` prints once the pod is ready: where it is, how to reach and stop it, and how long each step took."""
    pod = session.pod
    offer = session.ready.offer
    where = f"{offer.gpu_class if offer else pod.gpu_type_id} in {pod.data_center_id or '?'}"
    t = session.timings
    console.print(
        f"\n[bold green]ready[/bold green]  {session.name} ({pod.id}): {where}, ${session.cost_per_hr:.2f}/h"
    )
    if comfy is not None:
        console.print(f"  ComfyUI   {comfy.url}")
        console.print(
            f"            {comfy.comfy_dir}: {len(comfy.loras)} LoRA(s) copied, {comfy.packs_installed} node"
            f" pack(s) installed, {comfy.models_downloaded} model(s) downloaded"
        )
    # commands are never wrapped (piped or narrow terminals): they must paste whole
    console.print(f"  ssh       pistachio-infra ssh {session.name}", soft_wrap=True)
    argv = _ssh_argv(store, pod.id, session.ready.host, session.ready.port, pod.ssh_user)
    console.print(f"            {shlex.join(argv)}", soft_wrap=True, markup=False)
    console.print(
        f"  watchdog  terminates it at {_clock(session.deadline_epoch)} (max {max_hours:g} h), or"
        f" {idle_minutes:g} min after the last client heartbeat or login"
        + (" once ComfyUI (a running job) has stopped" if comfyui else "")
    )
    console.print(f"  stop      pistachio-infra down {session.name}", soft_wrap=True)
    steps = f"bootstrap {t['bootstrap_s']:.1f}s"
    if comfy is not None:
        c = comfy.timings
        steps = (
            f"ComfyUI bootstrap {c['bootstrap_s']:.1f}s, LoRAs {c['loras_s']:.1f}s, workflow"
            f" {c['install_s']:.1f}s, start {c['start_s']:.1f}s, URL {c['url_s']:.1f}s"
        )
    console.print(
        f"  timings   provision {t['provision_s']:.1f}s, ssh wait {t['ssh_wait_s']:.1f}s,"
        f" watchdog {t['watchdog_s']:.1f}s, {steps}, total {total:.1f}s"
    )


def _volume(volume: bool | None) -> tuple[str | None, str | None]:
    from ..errors import ConfigError

    if volume is False:
        return None, None
    try:
        from ..stacks import outputs
    except ImportError:
        outputs = None  # type: ignore[assignment]
    env = outputs() if outputs is not None else None
    if env is None:
        if volume:
            raise ConfigError(
                "--volume: no network volume exists (the env stack is not deployed)",
                "run `pistachio-infra env up` first, or use --no-volume",
            )
        return None, None
    return env.volume_id, env.data_center_id


def _bootstrap_line(console: Any) -> Any:
    import json

    def show(line: str) -> None:
        tag, _, payload = line.partition(" ")
        if tag in ("PISTACHIO-STEP", "PISTACHIO-MODEL"):
            try:
                data = json.loads(payload)
            except json.JSONDecodeError:
                return
            what = data.get("step") or data.get("item")
            mark = "[green]✓[/green]" if data.get("status") == "done" else "[dim]=[/dim]"
            console.print(f"    {mark} {what} [dim]{data.get('status')} {data.get('seconds', 0):.1f}s[/dim]")

    return show


# --- status -------------------------------------------------------------------------------------------------


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include pods that are gone.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document on stdout) instead of the table.")
def status(show_all: bool, as_json: bool) -> None:
    """Show pods (from our state, joined with the live API): status, uptime, $/h and $ so far."""
    from rich.table import Table

    from ..money import per_hour, usd

    cloud, api, store = _open()
    try:
        rows = _status_rows(store, api, cloud, show_all)
    finally:
        store.close()
    total = sum(r["usd_so_far"] or 0.0 for r in rows)
    where = cloud.label
    if as_json:
        from ..jsonout import emit, iso

        emit({"cloud": cloud.name, "pods": [{**r, "watchdog_deadline": iso(r["watchdog_deadline"])}
                                                    for r in rows],
              "total_usd_so_far": total})
        return
    console = _console()
    if not rows:
        console.print(f"no pods ({where}){'' if show_all else '; `status --all` includes the ones that are gone'}")
        return
    table = Table(title=f"pods ({where})")
    for col in ("name", "pod id", "gpu", "dc", "status", "uptime", "$/h", "$ so far (est.)", "watchdog deadline"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["pod_id"] or "-", r["gpu"] or "?", r["data_center"] or "?", r["status"],
                      _duration(r["uptime_s"]), per_hour(r["usd_per_hr"])[:-2],
                      "?" if r["usd_so_far"] is None else usd(r["usd_so_far"], like=total),
                      _clock(r["watchdog_deadline"]) if r["watchdog_deadline"] else "-")
    console.print(table)
    console.print(f"total so far (est.): {usd(total)}")


def _status_rows(store: Store, api: RunPodApi, cloud: Cloud, show_all: bool) -> list[dict[str, Any]]:
    from ..pods import NAME_PREFIX

    records = store.pods(cloud=cloud.name, live_only=not show_all)
    live = {p.id: p for p in api.list_pods()}
    now = time.time()
    rows: list[dict[str, Any]] = []
    known: set[str] = set()
    for rec in records:
        pod = live.get(rec.pod_id or "")
        if rec.pod_id:
            known.add(rec.pod_id)
        if rec.pod_id and pod is None and rec.status != "gone":  # its watchdog (or the console) ended it
            store.mark_pod_gone(rec.name, "no longer listed by RunPod (terminated by its watchdog or elsewhere)")
            rec = store.pod(rec.name) or rec
        state = pod.status.value if pod else ("gone" if rec.status == "gone" else f"{rec.status}, not listed")
        end = rec.gone_at if rec.status == "gone" and rec.gone_at else now
        seconds = end - rec.created_at if rec.pod_id else 0.0
        rate = (pod.cost_per_hr if pod and pod.cost_per_hr else rec.cost_per_hr) or 0.0
        rows.append({"name": rec.name, "pod_id": rec.pod_id, "gpu": rec.gpu_class or rec.gpu_type_id,
                     "data_center": rec.data_center_id, "status": state, "ours": True, "uptime_s": seconds,
                     "usd_per_hr": rate, "usd_so_far": rate * seconds / 3600,
                     "watchdog_deadline": rec.watchdog_deadline or None})
    for pod in live.values():
        if pod.name.startswith(NAME_PREFIX) and pod.id not in known:
            rows.append({"name": pod.name, "pod_id": pod.id, "gpu": pod.gpu_type_id,
                         "data_center": pod.data_center_id,
                         "status": f"{pod.status.value}, not in our state (see `reap`)", "ours": False,
                         "uptime_s": float(pod.uptime_s or 0), "usd_per_hr": pod.cost_per_hr or 0.0,
                         "usd_so_far": None, "watchdog_deadline": None})
    return rows


# --- ssh --------------------------------------------------------------------------------------------------


def _find(store: Store, api: RunPodApi, pod: str) -> tuple[PodRecord | None, Pod | None]:
    from ..errors import ConfigError

    rec = store.pod(pod)
    live = api.get_pod(rec.pod_id) if rec and rec.pod_id else None
    if rec is None:
        live = api.get_pod(pod) or api.find_pod_by_name(pod)
        if live is not None:
            rec = store.pod(live.id)
    if rec is None and live is None:
        raise ConfigError(f"no pod called {pod!r}", "see `pistachio-infra status` for names and ids")
    return rec, live


def _ssh_argv(store: Store, pod_id: str, host: str, port: int, user: str) -> list[str]:
    """The OpenSSH client command for a pod: our key only, and the host key pinned for this pod id."""
    from ..paths import ssh_key_path, state_dir

    argv = ["ssh", "-i", str(ssh_key_path()), "-p", str(port), "-o", "IdentitiesOnly=yes"]
    pinned = store.host_key(pod_id)
    if pinned:
        known = state_dir() / "ssh" / "known_hosts.d" / pod_id
        known.parent.mkdir(parents=True, exist_ok=True)
        known.write_text(f"[{host}]:{port} {pinned[0]} {pinned[1]}\n")
        argv += [
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
    return [*argv, f"{user}@{host}"]


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("pod", shell_complete=lambda ctx, param, incomplete: complete_names(incomplete))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command instead of running it.")
def ssh(pod: str, command: tuple[str, ...], print_only: bool) -> None:
    """Open a shell on POD (name or id), or run COMMAND there, with our key and the pod's pinned host key."""
    import shutil

    from ..errors import ConfigError, MissingToolError
    from ..paths import ssh_key_path
    from ..pods.lifecycle import ReadyPod
    from ..pods.session import connect_remote

    _cloud, api, store = _open()
    rec, live = _find(store, api, pod)
    if live is None or not live.ssh_ready:
        state = live.status.value if live else "gone"
        raise ConfigError(f"pod {pod} has no SSH endpoint (status {state})", "see `pistachio-infra status`")
    if store.host_key(live.id) is None:  # first contact: pin the host key (trust on first use) through paramiko
        if not ssh_key_path().exists():
            raise ConfigError(f"SSH key {ssh_key_path()} does not exist", "run `pistachio-infra init`")
        connect_remote(store, ReadyPod(rec.name if rec else live.name, live, None, [], 0, 0), timeout=30).close()
    argv = _ssh_argv(store, live.id, live.ssh_host or "", live.ssh_port or 22, live.ssh_user) + list(command)
    store.close()
    if print_only:
        click.echo(" ".join(argv))
        return
    if shutil.which("ssh") is None:
        raise MissingToolError("the OpenSSH client `ssh` is not installed", "install openssh-client")
    os.execvp("ssh", argv)


# --- logs -------------------------------------------------------------------------------------------------


@click.command()
@click.argument("pod", metavar="POD|JOB", shell_complete=lambda ctx, param, incomplete: complete_names(incomplete))
@click.option("--job", "job_name", help="Which log: bootstrap, caption, train, watchdog… (default: the most recent "
                                        "on a pod; every kept log of a job).")
@click.option("--watchdog", is_flag=True, help="Show the watchdog's log instead.")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the job ends (survives SSH drops).")
def logs(pod: str, job_name: str | None, watchdog: bool, follow: bool) -> None:
    """Show a pod's job log (bootstrap, caption, train, …) or its watchdog's log; for a JOB whose pod is gone, the
    logs kept in runs/<job>/<stamp>/logs/ (copied off the pod before teardown and after a failure)."""
    import shlex
    import sys

    from ..errors import ConfigError
    from ..pods.lifecycle import ReadyPod
    from ..pods.session import connect_remote
    from ..pods.watchdog import files_for

    _cloud, api, store = _open()
    try:
        rec, live = _find(store, api, pod)
    except ConfigError:
        rec, live = None, None
        run = _latest_run(store, pod)
        if run is None:
            store.close()
            raise ConfigError(f"no pod or job called {pod!r}", "see `pistachio-infra status` (pods) or "
                                                               "`pistachio-infra cost` (jobs)") from None
        held = store.pods(live_only=True, job_id=run["id"])
        if held:
            rec, live = _find(store, api, held[-1].name)
        if live is None or not live.ssh_ready:
            store.close()
            _print_saved(run, "watchdog" if watchdog else job_name)
            return
    if live is None or not live.ssh_ready:
        run = store.job(rec.job_id) if rec is not None and rec.job_id else None
        store.close()
        if run is not None:
            _print_saved(run, "watchdog" if watchdog else job_name)
            return
        raise ConfigError(
            f"pod {pod} is not reachable (status {live.status.value if live else 'gone'})",
            "logs live on the pod; see `pistachio-infra status`",
        )
    remote = connect_remote(store, ReadyPod(rec.name if rec else live.name, live, None, [], 0, 0), timeout=30)

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        if watchdog:
            out(remote.run(f"cat {shlex.quote(str(files_for(remote).log))} 2>/dev/null", check=False).stdout)
            return
        name = job_name or _latest_job(remote)
        if name is None:
            raise ConfigError(f"pod {pod} has no detached jobs yet", "use --watchdog for the watchdog's log")
        if follow:
            code = remote.follow(name, on_output=out)
            click.echo(f"[{name} exited with {code}]", err=True)
            return
        offset = 0
        while True:
            data, offset_next = remote.read_log(name, offset)
            if not data:
                break
            out(data.decode("utf-8", "replace"))
            offset = offset_next
    finally:
        remote.close()
        store.close()


def _latest_run(store: Store, job: str) -> dict[str, Any] | None:
    runs = [j for j in store.jobs() if j["name"] == job]
    return runs[-1] if runs else None


def _print_saved(run: dict[str, Any], which: str | None) -> None:
    """The logs a run kept (runs/<job>/<stamp>/logs/); `which`: one of them by name."""
    import sys

    from ..errors import ConfigError
    from ..pipeline.podlogs import logs_dir

    folder = logs_dir(Path((run.get("spec") or {}).get("run_folder") or "."))
    files = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if which:
        files = [p for p in files if p.stem == which]
    if not files:
        raise ConfigError(f"run {run['id']} of {run['name']} kept no {which + ' ' if which else ''}logs in {folder}",
                          "logs are copied off the pod at teardown; a run that never rented a pod has none")
    for path in files:
        if len(files) > 1:
            sys.stdout.write(f"==> {path} <==\n")
        sys.stdout.write(path.read_text())
    sys.stdout.flush()


def complete_names(incomplete: str) -> list[Any]:
    """Shell completion for POD/JOB arguments: pod names of our state, and job names (never touches the cloud)."""
    from click.shell_completion import CompletionItem

    try:
        from ..state import Store

        store = Store()
        try:
            pods = [r.name for r in store.pods(live_only=True)]
            jobs = list(dict.fromkeys(j["name"] for j in store.jobs()))
        finally:
            store.close()
    except Exception:  # completion must never fail loudly
        return []
    return [CompletionItem(n, help=kind) for kind, names in (("pod", pods), ("job", jobs)) for n in names
            if n.startswith(incomplete)]


def _latest_job(remote: Any) -> str | None:
    import shlex

    jobs_dir = f"{str(remote.workspace).rstrip('/')}/.pistachio/jobs"
    listing = remote.run(f"ls -1t {shlex.quote(jobs_dir)} 2>/dev/null", check=False).stdout.split()
    names = [n for n in listing if n != "watchdog"]
    return names[0] if names else None


# --- down -------------------------------------------------------------------------------------------------


@click.command()
@click.argument("pod", required=False, shell_complete=lambda ctx, param, incomplete: complete_names(incomplete))
@click.option("--all", "everything", is_flag=True, help="Every live pod in our state.")
def down(pod: str | None, everything: bool) -> None:
    """Terminate POD (name or id), or --all, and wait until RunPod no longer lists it."""
    from ..pods import PodLifecycle

    if bool(pod) == everything:
        raise click.UsageError("give a POD (name or id) or --all")
    cloud, api, store = _open()
    console = _console()
    lifecycle = PodLifecycle(api, store, cloud)
    if everything:
        targets = [r.name for r in store.pods(cloud=cloud.name, live_only=True)]
    else:
        rec, live = _find(store, api, pod or "")
        targets = [rec.name if rec else live.id]  # type: ignore[union-attr]
    if not targets:
        console.print("no live pods in our state")
    for target in targets:
        seconds = lifecycle.terminate(target, "down")
        console.print(f"terminated {target} ({seconds:.1f}s)")
    store.close()


# --- reap -------------------------------------------------------------------------------------------------


@click.command()
@click.option("-y", "--yes", is_flag=True, help="Terminate without asking (for scripts).")
def reap(yes: bool) -> None:
    """Find our pods (by name prefix) that no live job is using, and terminate them after confirmation."""
    from ..pipeline.detach import supervised
    from ..pipeline.driver import client_running
    from ..pods import PodLifecycle, find_orphans

    cloud, api, store = _open()
    console = _console()
    # a job is live while its client runs, or its pod's supervisor does (it ends the pod itself; `down` stops it)
    orphans = find_orphans(api, store, client_alive=lambda j: client_running(j["name"], j.get("project") or "")
                           or supervised(store, j["id"]))
    if not orphans:
        console.print("nothing to reap: every pistachio pod at RunPod belongs to a live job or `up` session")
        store.close()
        return
    for o in orphans:
        console.print(f"  {o.pod.name} ({o.pod.id}, {o.pod.status.value}, ${o.pod.cost_per_hr:.2f}/h): {o.why}")
    if not yes and not click.confirm(f"terminate these {len(orphans)} pod(s)?", default=False):
        console.print("nothing terminated")
        store.close()
        return
    lifecycle = PodLifecycle(api, store, cloud)
    for o in orphans:
        seconds = lifecycle.terminate(o.record.name if o.record else o.pod.id, f"reaped: {o.why}")
        console.print(f"terminated {o.pod.name} ({seconds:.1f}s)")
    store.close()
