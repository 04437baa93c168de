"""`lock` (write, check, upgrade pistachio.lock) and `rebuild` (bootstrap a pod exactly as the lock says)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..endpoints import Cloud
    from ..lock.drift import DriftReport
    from ..lock.lockfile import Lock

LOCK_WATCHDOG_HOURS = 1.0  # a pod rented only to read its package set


def _console() -> Any:

    from ..console import make_console

    return make_console()


def _classes(gpu: tuple[str, ...]) -> tuple[str, ...]:
    """The GPU classes to try for a pod that only installs software: as given, else the 48 GB ones by price."""
    from ..catalog import gpu_class, gpu_classes

    if gpu:
        return tuple(dict.fromkeys(gpu_class(n).name for n in gpu))
    classes = sorted(gpu_classes().values(), key=lambda c: (c.tier != 48, c.price_hint_usd_hr))
    return tuple(c.name for c in classes[:3])


def _show(console: Any, report: DriftReport, *, title: str, show_all: bool, old: str, new: str) -> None:
    from rich.table import Table

    rows = report.items if show_all else [i for i in report.items if i.status != "ok"]
    counts = report.counts()
    summary = ", ".join(
        f"{component}: " + " ".join(f"{n} {status}" for status, n in sorted(per.items()))
        for component, per in counts.items()
    )
    if rows:
        table = Table(title=title, show_lines=False)
        for col in ("component", "item", old, new, "status", "note"):
            table.add_column(col, overflow="fold")
        colour = {"ok": "green", "changed": "yellow", "missing": "red", "extra": "magenta", "unknown": "dim"}
        for i in rows:
            table.add_row(i.component, i.name, i.pinned or "—", i.actual or "—",
                          f"[{colour.get(i.status, 'white')}]{i.status}[/]", i.note)
        console.print(table)
    console.print(f"[dim]{summary}[/dim]")


def _ask_to_rent(cloud: Cloud, classes: tuple[str, ...], *, what: str, max_hours: float, use_s: float, yes: bool,
                 command: str, console: Any) -> None:
    """Print what the pod will cost and ask, as `up` and `train` do (confirm.py); nothing is rented on no."""
    from contextlib import closing

    from ..confirm import ask, pod_plan
    from ..runpod import connect
    from ..state import Store

    api = connect(cloud)
    try:
        with closing(Store()) as store:
            plan = pod_plan(api, classes, what=what, max_hours=max_hours, store=store, cloud_name=cloud.name,
                            use_s=use_s)
    finally:
        api.close()
    ask(plan.lines(), yes=yes, command=command, echo=lambda line: console.print(line, markup=False))


def _freeze_by_renting(cloud: Cloud, gpu: tuple[str, ...], console: Any, *, yes: bool) -> Any:
    """A freeze function that rents a pod (after asking), bootstraps it at the lock's commits, reads it and
    terminates it."""
    from ..lock.rebuild import bootstrap_for_lock, freeze_from
    from ..pods import PodSpec
    from ..pods.session import pod_session
    from ..pods.sshkeys import public_key
    from ..pods.watchdog import WatchdogPolicy

    classes = _classes(gpu)

    def freeze(lock: Lock) -> Lock:
        spec = PodSpec(purpose="lock", label="lock", gpu_classes=classes, public_key=public_key())
        policy = WatchdogPolicy.from_env(max_runtime_s=LOCK_WATCHDOG_HOURS * 3600)
        _ask_to_rent(cloud, classes, what="lock (a pod that reads the installed package set, then is terminated)",
                     max_hours=LOCK_WATCHDOG_HOURS, use_s=300, yes=yes, command="lock", console=console)
        console.print(f"  renting a pod ({' → '.join(classes)}) to read the installed package set")
        with pod_session(spec, policy=policy, models=None, cloud=cloud,
                         report=lambda m: console.print(f"  [dim]•[/dim] {m}")) as session:
            bootstrap_for_lock(session.remote, cloud, lock, store=session.store, pod_name=session.name)
            return freeze_from(session.remote, lock)

    return freeze


def _freeze_from_pod(pod: str) -> Any:
    def freeze(lock: Lock) -> Lock:
        from ..lock.rebuild import freeze_from

        with _pod_remote(pod) as (remote, _image):
            return freeze_from(remote, lock)

    return freeze


class _pod_remote:
    """An SSH connection to a live pod named by record name or id, with the image the API says it runs."""

    def __init__(self, pod: str) -> None:
        self.pod = pod

    def __enter__(self) -> tuple[Any, str | None]:
        from ..errors import ConfigError
        from ..pods.lifecycle import ReadyPod
        from ..pods.session import connect_remote
        from .pods import _find, _open

        _cloud, api, self.store = _open()
        rec, live = _find(self.store, api, self.pod)
        if live is None or not live.ssh_ready:
            state = live.status.value if live else "gone"
            raise ConfigError(f"pod {self.pod} has no SSH endpoint (status {state})", "see `pistachio-infra status`")
        self.name = rec.name if rec else live.name
        self.remote = connect_remote(self.store, ReadyPod(self.name, live, None, [], 0, 0), timeout=60)
        return self.remote, live.image

    def __exit__(self, *exc: object) -> None:
        self.remote.close()
        self.store.close()


@click.command()
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default="pistachio.lock",
              show_default=True, help="The lock file to write (with --check: to compare with).")
@click.option("--check", "check_pod", metavar="POD", help="Compare POD (name or id) with the lock item by item; "
              "exit 1 when anything drifted.")
@click.option("--upgrade", is_flag=False, flag_value="all", default=None, metavar="[COMPONENT]",
              help="Re-resolve COMPONENT (all, tool, image, a repo, python, models, a model, gpu-classes), show the "
              "diff, then write.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask: rent the pod that reads the package set, and with "
              "--upgrade write the changes.")
@click.option("--from-pod", "from_pod", metavar="POD",
              help="Read the Python packages from this bootstrapped pod instead of renting one.")
@click.option("--gpu", multiple=True, help="Class(es) for the pod rented to read the package set "
              "(default: the cheapest 48 GB classes).")
@click.option("--model", "models", multiple=True, help="Base models to lock (default: Wan 2.1 14B + JoyCaption).")
@click.option("--all", "show_all", is_flag=True, help="List matching items too, not only differences.")
@click.option("--rehash", is_flag=True, help="With --check: hash every model file again instead of trusting the "
              "download record for unchanged files.")
@click.option("--json", "as_json", is_flag=True, help="With --check: print the drift report as JSON (one document "
              "on stdout); the exit status is the same.")
def lock(out: Path, check_pod: str | None, upgrade: str | None, yes: bool, from_pod: str | None,
         gpu: tuple[str, ...], models: tuple[str, ...], show_all: bool, rehash: bool, as_json: bool) -> None:
    """Write pistachio.lock: image, repo commits (+ submodules), the pod's Python packages, base-model files
    (revision, size, sha256), GPU-class profiles and config hashes, and the tool's version.

    \b
    pistachio-infra lock                        write it (rents a small pod for a few minutes to read packages)
    pistachio-infra lock --check POD            what differs between the lock and a live pod
    pistachio-infra lock --upgrade models       show what a newer model revision changes, then write
    pistachio-infra rebuild                     a pod exactly as the lock says
    """
    from ..catalog import base_model
    from ..endpoints import resolve_cloud
    from ..errors import ConfigError
    from ..lock.lockfile import load_lock, write_lock
    from ..pods.bootstrap import DEFAULT_MODELS

    console = _console()
    if as_json and not check_pod:
        raise click.UsageError("--json goes with --check POD")
    if check_pod and (upgrade or from_pod):
        raise ConfigError("--check cannot be combined with --upgrade or --from-pod", "run them one at a time")
    for name in models:
        base_model(name)
    _classes(gpu)  # unknown classes are refused before anything else

    if check_pod:
        from ..lock.rebuild import check_cloud
        from ..lock.rebuild import check_pod as check

        pinned = load_lock(out)
        cloud = resolve_cloud()
        check_cloud(pinned, cloud, str(out))
        with _pod_remote(check_pod) as (remote, image):
            report = check(remote, cloud, pinned, pod_image=image, subject=check_pod, rehash=rehash)
        if as_json:
            from ..jsonout import emit

            emit({"lock": str(out), "pod": check_pod, "clean": report.clean,
                  "items": [{"component": i.component, "name": i.name, "pinned": i.pinned, "actual": i.actual,
                             "status": i.status, "note": i.note} for i in report.items],
                  "counts": report.counts()})
            if not report.clean:
                raise SystemExit(1)
            return
        _show(console, report, title=f"{out} vs pod {check_pod}", show_all=show_all, old="pinned", new="on the pod")
        if report.clean:
            console.print(f"[green]no drift[/green]: pod {check_pod} matches {out}")
            return
        console.print(f"[yellow]drift[/yellow]: {len(report.drifted)} item(s) of pod {check_pod} differ from {out}")
        raise SystemExit(1)

    from ..lock.drift import compare_locks
    from ..lock.rebuild import check_cloud, new_lock, upgrade_parts, upgraded_lock

    if out.exists() and upgrade is None:
        raise ConfigError(f"{out} already exists",
                          "change it with `pistachio-infra lock --upgrade [component]`, compare a pod with "
                          "`--check POD`, or write elsewhere with --out")
    if upgrade is not None and not out.exists():
        raise ConfigError(f"{out} does not exist, so there is nothing to upgrade", "write it first with `lock`")
    old = load_lock(out) if upgrade is not None else None
    cloud = resolve_cloud()
    freeze = _freeze_from_pod(from_pod) if from_pod else _freeze_by_renting(cloud, gpu, console, yes=yes)
    if upgrade is None:
        lock_data = new_lock(cloud, models or DEFAULT_MODELS, freeze)
        write_lock(lock_data, out)
        console.print(f"[green]wrote[/green] {out} ({_describe(lock_data)})")
        return

    assert old is not None
    check_cloud(old, cloud, str(out))
    parts = upgrade_parts(old, upgrade)
    new = upgraded_lock(cloud, old, parts, freeze)
    report = compare_locks(old, new)
    if report.clean:
        console.print(f"{out} is up to date ({upgrade}): nothing to change")
        return
    _show(console, report, title=f"{out}: --upgrade {upgrade}", show_all=False, old="locked", new="new")
    if not yes and not click.confirm(f"write these {len(report.drifted)} change(s) to {out}?", default=False):
        console.print("nothing written")
        return
    write_lock(new, out)
    console.print(f"[green]wrote[/green] {out} ({_describe(new)})")


def _describe(lock: Lock) -> str:
    packages = sum(len(e.packages) for e in lock.python.values())
    files = sum(len(m.files) for m in lock.models.values())
    return (f"{len(lock.repos)} repos, {packages} Python packages, {files} model files, "
            f"{len(lock.gpu_classes)} GPU classes; digest {lock.digest()[:12]}")


@click.command()
@click.option("--lock", "lock_path", type=click.Path(dir_okay=False, path_type=Path), default="pistachio.lock",
              show_default=True, help="The lock to rebuild.")
@click.option("--gpu", multiple=True, help="GPU class(es), in fallback order (default: the cheapest 48 GB classes).")
@click.option("--max-hours", type=float, default=3.0, show_default=True, help="The watchdog terminates it then.")
@click.option("--idle-minutes", type=float, default=30.0, show_default=True,
              help="Terminate after this long with no client attached, no job running and nobody logged in.")
@click.option("--keep/--no-keep", default=True, show_default=True,
              help="Keep the verified pod running (until `down` or its watchdog); --no-keep only proves the lock.")
@click.option("-y", "--yes", is_flag=True, help="Rent without asking (needed without a terminal).")
def rebuild(lock_path: Path, gpu: tuple[str, ...], max_hours: float, idle_minutes: float,
            keep: bool, yes: bool) -> None:
    """Rent a pod and bootstrap it exactly as the lock says: pinned commits, the frozen package set, model files at
    their pinned revisions checked against their sha256; then verify that nothing differs."""
    from ..endpoints import resolve_cloud
    from ..errors import ConfigError
    from ..lock.lockfile import load_lock
    from ..lock.rebuild import bootstrap_from_lock, check_cloud
    from ..pods import PodSpec
    from ..pods.session import pod_session
    from ..pods.sshkeys import public_key
    from ..pods.watchdog import WatchdogPolicy

    console = _console()
    pinned = load_lock(lock_path)
    if max_hours <= 0 or idle_minutes <= 0:
        raise ConfigError("--max-hours and --idle-minutes must be positive", "give e.g. --max-hours 3")
    classes = _classes(gpu)
    cloud = resolve_cloud()
    check_cloud(pinned, cloud, str(lock_path))
    policy = WatchdogPolicy.from_env(max_runtime_s=max_hours * 3600, idle_s=idle_minutes * 60)
    spec = PodSpec(purpose="rebuild", label=lock_path.stem, gpu_classes=classes, public_key=public_key())
    kept = "kept until `down` or its watchdog" if keep else "terminated after the check"
    _ask_to_rent(cloud, classes, what=f"rebuild {lock_path} ({kept})", max_hours=max_hours,
                 use_s=3600 if keep else 300, yes=yes, command="rebuild", console=console)
    with pod_session(spec, policy=policy, models=None, keep=keep, cloud=cloud,
                     report=lambda m: console.print(f"  [dim]•[/dim] {m}")) as session:
        console.print(f"  rebuilding {session.name} from {lock_path} (digest {pinned.digest()[:12]})")
        report = bootstrap_from_lock(session.remote, cloud, pinned, store=session.store, pod_name=session.name,
                                     pod_image=session.pod.image)
        _show(console, report, title="", show_all=False, old="pinned", new="on the pod")
        console.print(f"[green]rebuilt[/green] {session.name} ({session.pod.id}): no drift from {lock_path}")
        if keep:
            console.print(f"  ssh   pistachio-infra ssh {session.name}")
            console.print(f"  stop  pistachio-infra down {session.name}")
