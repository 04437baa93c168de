"""`campaign plan|run|status`: many LoRAs under one hard budget (pistachio_infra/campaign/)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click


@click.group()
def campaign() -> None:
    """Plan and run many LoRAs under one hard budget, each job on the GPU class that is cheapest *per job*.

    \b
    campaign plan FILE     the plan: class, data center, time and cost per job, total vs budget ($0)
    campaign run FILE      run it (resumes when run again); Ctrl-C stops every job and terminates its pod
    campaign status [FILE] progress and money, live
    """


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _setup(file: Path) -> tuple[Any, Any, Any, str]:
    from ..campaign.spec import ensure_sample_datasets, load_campaign
    from ..endpoints import resolve_cloud

    c = load_campaign(file)
    written = ensure_sample_datasets(c)
    cloud = resolve_cloud()
    return c, cloud, written, cloud.name


def _plan(c: Any, cloud: Any, cloud_name: str, store: Any, *, spent_usd: float = 0.0,
          jobs: list[str] | None = None, timings: str | None = None) -> Any:
    from ..campaign.planning import build_plan
    from ..runpod import connect

    api = connect(cloud)
    try:
        return build_plan(c, api, cloud_name, store, jobs=jobs, budget_usd=c.settings.budget_usd - spent_usd,
                          timings_cloud=timings)
    finally:
        api.close()


def _show_plan(console: Any, ctx: Any) -> None:
    from ..campaign.planning import plan_summary, plan_table

    console.print(plan_table(ctx))
    for line in plan_summary(ctx):
        console.print(f"  {line}")


@campaign.command("plan")
@click.argument("file", type=click.Path(path_type=Path, exists=True))
@click.option("--timings", type=click.Choice(["runpod", "sandbox"]), default=None,
              help="Use this cloud's timing model (default: the cloud in use). `--sandbox campaign plan --timings "
                   "runpod` previews real-GPU durations against the sandbox's seed prices.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the plan as one JSON document (schema: pistachio_infra.campaign.planning.PLAN_SCHEMA); "
                   "exits non-zero when the campaign is refused.")
def plan_cmd(file: Path, timings: str | None, as_json: bool) -> None:
    """Print the plan for FILE (campaign.toml, or a pistachio.toml with [campaign]); nothing is rented."""
    from ..campaign.planning import refuse_unless_fits
    from ..state import Store

    console = _console()
    c, cloud, written, cloud_name = _setup(file)
    for folder in written:
        if not as_json:
            console.print(f"  generated sample images in {folder}")
    store = Store()
    try:
        ctx = _plan(c, cloud, cloud_name, store, timings=timings)
    finally:
        store.close()
    if as_json:
        import json

        from ..campaign.planning import plan_json

        click.echo(json.dumps(plan_json(ctx), indent=2))
        if ctx.plan.refusal is not None:
            raise SystemExit(1)
        return
    _show_plan(console, ctx)
    refuse_unless_fits(ctx)


@campaign.command("run")
@click.argument("file", type=click.Path(path_type=Path, exists=True))
@click.option("--replan", is_flag=True, help="Plan the unfinished jobs again (live prices) instead of resuming.")
def run_cmd(file: Path, replan: bool) -> None:
    """Run FILE's campaign: concurrent jobs, each on its planned GPU, never past the budget. Run again to resume."""
    from filelock import FileLock, Timeout

    from ..campaign.executor import Executor, plan_records
    from ..campaign.planning import refuse_unless_fits
    from ..campaign.records import CampaignRecords
    from ..errors import PistachioError
    from ..money import usd
    from ..paths import state_dir
    from ..state import Store

    console = _console()
    c, cloud, written, cloud_name = _setup(file)
    for folder in written:
        console.print(f"  generated sample images in {folder}")
    locks = state_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"campaign-{c.name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise PistachioError(f"campaign {c.name!r} is already running in another process",
                             f"watch it with `pistachio-infra campaign status {file}`") from None
    store, records = Store(), CampaignRecords()
    try:
        stored = records.campaign(c.name, cloud_name)
        done = {r["job"] for r in records.jobs(c.name, cloud_name) if r["status"] == "done"}
        if stored is not None and stored["fingerprint"] == c.fingerprint and not replan:
            console.print(f"campaign [bold]{c.name}[/bold]: resuming ({len(done)} of {len(c.jobs)} jobs done)")
        else:
            spent_usd = _campaign_spent(store, c.name, cloud_name)
            todo = [j.name for j in c.jobs if j.name not in done]
            ctx = _plan(c, cloud, cloud_name, store, spent_usd=spent_usd, jobs=todo)
            _show_plan(console, ctx)
            refuse_unless_fits(ctx)
            records.save_plan(c.name, cloud_name, fingerprint=c.fingerprint, source=str(c.path),
                              budget_usd=c.settings.budget_usd, plan=plan_records(ctx),
                              not_started=ctx.plan.not_started)
        t0 = time.monotonic()
        outcome = Executor(c, cloud, store, records, lambda m: console.print(f"  {m}")).run()
        console.print()
        status = "[green]complete[/green]" if outcome.complete else "[yellow]incomplete[/yellow]"
        spent = usd(outcome.spent_usd, like=outcome.budget_usd)  # never looks over budget through rounding
        console.print(f"campaign {c.name}: {status}: {len(outcome.done)}/{len(c.jobs)} done, "
                      f"spent {spent} of {usd(outcome.budget_usd)}, {outcome.left_pods} pod(s) "
                      f"left to sweep, {time.monotonic() - t0:.0f}s")
        for kind, items in (("failed", outcome.failed), ("stopped", outcome.stopped), ("skipped", outcome.skipped),
                            ("not started", outcome.not_started)):
            for job, why in items.items():
                console.print(f"  {job}: {kind}: {why}")
        if not outcome.complete:
            if outcome.not_started and not (outcome.failed or outcome.stopped or outcome.skipped):
                raise PistachioError(f"campaign {c.name}: {len(outcome.not_started)} job(s) not started, the budget "
                                     f"cannot pay for them: {', '.join(outcome.not_started)}",
                                     "raise budget_usd and run again to start them")
            raise PistachioError(f"campaign {c.name} did not finish every job",
                                 f"see `pistachio-infra campaign status {file}`; run again to resume")
    finally:
        records.close()
        store.close()
        lock.release()


def _campaign_spent(store: Any, name: str, cloud_name: str) -> float:
    from ..campaign.ledger import spent

    ids = [j["id"] for j in store.jobs(campaign=name) if j["cloud"] == cloud_name]
    return sum(spent(store, ids).values())


@campaign.command("status")
@click.argument("file", required=False, type=click.Path(path_type=Path, exists=True))
@click.option("--watch", is_flag=True, help="Refresh every 2 seconds until Ctrl-C.")
def status_cmd(file: Path | None, watch: bool) -> None:
    """Progress and money of FILE's campaign (default: every campaign in the state store)."""
    from rich.live import Live

    console = _console()
    name = None
    if file is not None:
        from ..campaign.spec import load_campaign

        name = load_campaign(file).name
    if not watch:
        console.print(status_table(name))
        return
    with Live(status_table(name), console=console, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(2)
                live.update(status_table(name))
        except KeyboardInterrupt:
            pass


def status_table(name: str | None) -> Any:
    from rich.table import Table

    from ..campaign.ledger import spent
    from ..campaign.records import CampaignRecords
    from ..state import Store

    store, records = Store(), CampaignRecords()
    try:
        table = Table()
        for col in ("campaign", "job", "status", "try", "GPU", "data center", "estimate", "allowance", "spent",
                    "note"):
            table.add_column(col, justify="right" if col in ("estimate", "allowance", "spent", "try") else "left")
        campaigns = [c for c in records.campaigns() if name is None or c["name"] == name]
        if not campaigns:
            table.title = "no campaign has run yet" if name is None else f"campaign {name} has not run yet"
        for c in campaigns:
            jobs = store.jobs(campaign=c["name"])
            by_name: dict[str, float] = {}
            per_id = spent(store, [j["id"] for j in jobs if j["cloud"] == c["cloud"]])
            for j in jobs:
                if j["id"] in per_id:
                    by_name[j["name"]] = by_name.get(j["name"], 0.0) + per_id[j["id"]]
            for r in records.jobs(c["name"], c["cloud"]):
                table.add_row(c["name"], r["job"], r["status"], str(r["attempts"]), r["gpu_class"] or "",
                              r["data_center_id"] or "any", f"${r['est_usd'] or 0:.4f}",
                              f"${r['allowance_usd']:.4f}" if r["allowance_usd"] else "",
                              f"${by_name.get(r['job'], 0.0):.4f}", (r["error"] or "")[:60])
            total = sum(by_name.values())
            table.add_section()
            table.add_row(c["name"], "total", c["status"], "", "", c["cloud"], "", f"budget ${c['budget_usd']:.2f}",
                          f"${total:.4f}", "")
        return table
    finally:
        records.close()
        store.close()
