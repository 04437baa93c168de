"""`pistachio-infra sandbox up|down|status|reset`: the local RunPod stand-in."""

from __future__ import annotations

from pathlib import Path

import click

HOME_OPTION = click.option(
    "--home", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Sandbox state folder (default: the sandbox folder under the pistachio-infra state dir).",
)


def _print_info(info, *, heading: str) -> None:
    click.echo(f"{heading} (pid {info.pid}, state in {info.home})")
    click.echo(f"  REST v2:   {info.rest_url}")
    click.echo(f"  GraphQL:   {info.graphql_base}/graphql   (runpod SDK: RUNPOD_API_BASE_URL={info.graphql_base})")
    click.echo(f"  HF hub:    {info.hf_endpoint}   (HF_ENDPOINT)")
    click.echo(f"  API key:   {info.api_key}   (sandbox only; every pod also gets its own pod-scoped key)")
    for name, pin in sorted(info.repos.items()):
        click.echo(f"  {name}: {pin.url} @ {pin.commit[:12]}")
    click.echo("Use it: `pistachio-infra --sandbox <command>` or export PISTACHIO_SANDBOX=1")


@click.group()
def sandbox() -> None:
    """Start, stop or inspect the local RunPod stand-in (REST v2 + GraphQL API, sshd pods, HF hub, stand-in repos)."""


@sandbox.command()
@HOME_OPTION
@click.option("--scenario", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="TOML scenario: timings, stock, faults, trainer/captioner behaviour (see sandbox/scenario.py).")
@click.option("--log-requests", is_flag=True, default=False,
              help="Write one debug line per API request to server.log (method, path or GraphQL operation, status, "
                   "duration; never a key). Takes effect when this starts the server; also "
                   "PISTACHIO_SANDBOX_LOG_REQUESTS=1.")
def up(home: Path | None, scenario: Path | None, log_requests: bool) -> None:
    """Start the sandbox (or reuse the running one) and print its URLs and API key."""
    from ..sandbox import control

    info = control.start(home, scenario, log_requests=log_requests)
    _print_info(info, heading="sandbox running")


@sandbox.command()
@HOME_OPTION
def down(home: Path | None) -> None:
    """Terminate every sandbox pod and stop the server (state is kept; `up` brings it back)."""
    from ..sandbox import control

    running = control.status(home)
    control.stop(home)
    click.echo("sandbox stopped" if running else "sandbox was not running")


@sandbox.command()
@HOME_OPTION
def status(home: Path | None) -> None:
    """Say whether the sandbox runs, where, and which pods it has."""
    from ..sandbox import control

    info = control.status(home)
    if info is None:
        click.echo("sandbox is not running (start it with `pistachio-infra sandbox up`)")
        raise SystemExit(1)
    _print_info(info, heading="sandbox running")
    pods = control.Admin(info).pods()
    live = [p for p in pods if p["status"] != "TERMINATED"]
    click.echo(f"  pods: {len(live)} live, {len(pods) - len(live)} terminated")
    for pod in live:
        port = f" ssh -p {pod['ssh_port']}" if pod.get("ssh_port") else ""
        click.echo(f"    {pod['id']}  {pod['status']:<12} {pod['name']}  {pod['gpu_id']} x{pod['gpu_count']}"
                   f"  {pod['data_center_id']}{port}")


@sandbox.command()
@HOME_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(home: Path | None, yes: bool) -> None:
    """Stop the sandbox and delete all its state (pods, volumes, keys, billing, HF repos)."""
    from ..sandbox import control

    if not yes:
        click.confirm("Delete all sandbox state?", abort=True)
    control.reset(home)
    click.echo("sandbox reset")
