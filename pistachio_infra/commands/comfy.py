"""`comfy resolve`: the custom nodes and models a ComfyUI workflow needs, what is missing; `--install` installs it."""

from __future__ import annotations

import sys
from typing import Any

import click


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(highlight=False, stderr=stderr, width=None if sys.stdout.isatty() else 200)


def _size(n: int | None, approx: bool = False) -> str:
    if n is None:
        return "size ?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{'~' if approx else ''}{n / scale:.2f} {unit}"
    return f"{n} B"


def _parse_choices(values: tuple[str, ...]) -> dict[str, str]:
    from ..errors import ConfigError

    out = {}
    for value in values:
        key, sep, choice = value.partition("=")
        if not sep or not key.strip() or not choice.strip():
            raise ConfigError(
                f"--choose {value!r} is not NAME=CHOICE",
                "write --choose NodeType=https://github.com/owner/pack or "
                "--choose model.safetensors=owner/repo/path/in/repo.safetensors",
            )
        out[key.strip()] = choice.strip()
    return out


def _pod_target(pod: str, comfy_dir: str | None, cloud: Any) -> tuple[Any, Any]:
    from ..comfy.target import PodTarget
    from ..errors import ConfigError
    from ..pods.lifecycle import ReadyPod
    from ..pods.session import connect_remote
    from ..runpod import connect
    from ..state import Store

    api, store = connect(cloud), Store()
    rec = store.pod(pod)
    live = api.get_pod(rec.pod_id) if rec and rec.pod_id else (api.get_pod(pod) or api.find_pod_by_name(pod))
    if live is None or not live.ssh_host or not live.ssh_port:
        store.close()
        raise ConfigError(f"no running pod called {pod!r} with SSH", "see `pistachio-infra status` for names and ids")
    remote = connect_remote(store, ReadyPod(rec.name if rec else live.name, live, None, [], 0, 0), timeout=60)
    env = {"HF_TOKEN": cloud.hf_token} if cloud.hf_token else {}
    return PodTarget(remote, comfy_dir, env=env), store


def _chooser(yes: bool, console: Any) -> Any:
    def choose(ref: Any, candidates: list[Any]) -> Any:
        if yes:
            return candidates[0]
        if not sys.stdin.isatty():
            return None
        console.print(f"\n[bold]{ref.name}[/bold] ({ref.folder}): several Hugging Face files fit")
        for i, c in enumerate(candidates, 1):
            console.print(f"  {i}. {c.repo}/{c.path}  {_size(c.size)}  ({c.downloads} downloads)")
        pick = click.prompt("choose a number (0 = none)", type=click.IntRange(0, len(candidates)), default=1)
        return candidates[pick - 1] if pick else None

    return choose


def _print_plan(plan: Any, console: Any) -> None:
    console.print(f"[bold]{plan.workflow}[/bold] → {plan.target}")
    console.print(f"  [dim]{plan.database}[/dim]")
    for warning in plan.warnings:
        console.print(f"  [yellow]![/yellow] {warning}")
    console.print(f"\n[bold]Custom nodes[/bold]  ({len(plan.nodes.core)} core node types need nothing)")
    if not plan.packs and not plan.nodes.ambiguous and not plan.nodes.unresolved:
        console.print("  none needed")
    for p in plan.packs:
        mark = {"install": "[cyan]install[/cyan]", "present": "[green]present[/green]"}.get(p.status, p.status)
        pin = f" @ {p.need.commit[:10]}" if p.need.commit else ""
        console.print(f"  {mark:<9} {p.need.title}  {p.need.url}{pin}  → {p.dest}")
        console.print(
            f"            [dim]{', '.join(p.need.types)} ({p.need.how}){'; ' + p.note if p.note else ''}[/dim]"
        )
    for node_type, urls in plan.nodes.ambiguous.items():
        console.print(f"  [yellow]choose[/yellow]    {node_type}: provided by {', '.join(urls)}")
        console.print(f"            [dim]--choose '{node_type}=URL'[/dim]")
    for node_type in plan.nodes.unresolved:
        console.print(f"  [red]unknown[/red]   {node_type}: no pack in the database provides it")
    for sg in plan.nodes.missing_subgraphs:
        console.print(f"  [red]missing[/red]   subgraph {sg} is used but not defined in the workflow")
    console.print("\n[bold]Models[/bold]")
    if not plan.models:
        console.print("  none")
    for m in plan.models:
        src = m.res.source
        label = {
            "download": "[cyan]download[/cyan]",
            "present": "[green]present[/green]",
            "gated": "[yellow]gated[/yellow]",
            "ambiguous": "[yellow]choose[/yellow]",
            "unresolved": "[red]unknown[/red]",
        }[m.status]
        console.print(f"  {label:<9} {m.res.ref.name}  → {m.dest or '?'}")
        if src is not None and m.status != "present":
            console.print(
                f"            [dim]{src.url} ({src.how}, {_size(src.size, src.size_approx)}"
                f"{', sha256 ' + src.sha256[:12] if src.sha256 else ''})[/dim]"
            )
        for c in m.res.candidates if m.status == "ambiguous" else []:
            console.print(f"            [dim]candidate {c.repo}/{c.path} {_size(c.size)}[/dim]")
        if m.status == "ambiguous":
            console.print(f"            [dim]--choose '{m.res.ref.name}=REPO/PATH' or --yes for the first[/dim]")
        if m.note:
            console.print(f"            [dim]{m.note}[/dim]")
    unknown = f" + {plan.unknown_sizes} of unknown size" if plan.unknown_sizes else ""
    console.print(
        f"\n[bold]To do[/bold]  {len(plan.to_install)} node pack(s) to install, {len(plan.to_download)} "
        f"model(s) to download: {_size(plan.download_bytes)}{unknown}"
    )
    if plan.nothing_to_do and plan.complete:
        console.print("[green]everything the workflow needs is present[/green]")


@click.group()
def comfy() -> None:
    """ComfyUI workflows: find and install the custom nodes and models they need."""


@comfy.command()
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=str))
@click.option("--comfy-dir", help="The ComfyUI folder (local; with --pod, the folder on the pod).")
@click.option("--pod", help="A pod (name or id) whose ComfyUI to check and install into.")
@click.option("--install", is_flag=True, help="Install the missing node packs and download the missing models.")
@click.option(
    "--yes", "-y", is_flag=True, help="When several packs or hub files fit, take the best-ranked one instead of asking."
)
@click.option(
    "--choose",
    "choices",
    multiple=True,
    metavar="NAME=CHOICE",
    help="Pack URL for a node type, or hub file (owner/repo/path or URL) for a model. Repeatable.",
)
@click.option("--no-search", is_flag=True, help="Do not search the Hugging Face hub for models found nowhere else.")
@click.option("--refresh-db", is_flag=True, help="Download ComfyUI-Manager's database even if the cache is fresh.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (nothing else on stdout).")
def resolve(
    workflow: str,
    comfy_dir: str | None,
    pod: str | None,
    install: bool,
    yes: bool,
    choices: tuple[str, ...],
    no_search: bool,
    refresh_db: bool,
    as_json: bool,
) -> None:
    """Show what WORKFLOW (a .json or ComfyUI .png) needs on a ComfyUI installation, and --install it.

    \b
    Exit status: 0 when everything the workflow needs is (or, with --install, now is) present;
    1 when something is unresolved, ambiguous, gated without access, or failed to install.
    """
    import json
    from pathlib import Path

    from ..comfy.install import install as apply_plan
    from ..comfy.resolve import resolve_workflow
    from ..comfy.target import LocalTarget
    from ..comfy.workflow import load_workflow
    from ..endpoints import cloud_choice, resolve_cloud
    from ..errors import ConfigError

    if not pod and not comfy_dir:
        raise ConfigError("no ComfyUI given", "add --comfy-dir /path/to/ComfyUI, or --pod POD for a pod's ComfyUI")
    load_workflow(workflow)  # bad input fails here, before any connection
    parsed = _parse_choices(choices)
    console = _console(stderr=as_json)
    cloud = resolve_cloud() if pod else None
    hf_endpoint, hf_token = (cloud.hf_endpoint, cloud.hf_token) if cloud else cloud_choice().hub()
    store = None
    if pod:
        target, store = _pod_target(pod, comfy_dir, cloud)
    else:
        target = LocalTarget(Path(comfy_dir or "."))
    try:
        plan = resolve_workflow(
            workflow,
            target,
            hf_endpoint=hf_endpoint,
            hf_token=hf_token,
            choices=parsed,
            choose=_chooser(yes, console),
            search=not no_search,
            refresh_db=refresh_db,
            auto=yes,
        )
        if as_json:
            click.echo(json.dumps(plan.to_dict(), indent=1))
        else:
            _print_plan(plan, console)
        ok = plan.complete
        if install and not plan.nothing_to_do:
            console.print("\n[bold]Installing[/bold]")
            report = apply_plan(
                plan,
                target,
                hub_endpoint=hf_endpoint,
                show_progress=not as_json,
                on_line=lambda line: console.print(f"  [dim]{line}[/dim]"),
            )
            done = sum(1 for p in report.packs if p.get("status") == "installed")
            got = [m for m in report.models if m.get("status") == "downloaded"]
            console.print(
                f"  {done} node pack(s) installed, {len(got)} model(s) downloaded "
                f"({_size(report.downloaded_bytes)}, {sum(1 for m in got if m.get('verified'))} "
                f"sha256-verified) in {report.seconds:.1f}s"
            )
            if report.restart:
                console.print(f"  {report.restart}")
            ok = ok and not report.failures and report.exit_code == 0
        elif install:
            console.print("\nnothing to install")
    finally:
        remote = getattr(target, "remote", None)
        if remote is not None:
            remote.close()
        if store is not None:
            store.close()
    if not ok:
        sys.exit(1)
