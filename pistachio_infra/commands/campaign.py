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
    campaign run FILE --detach   run it on a RunPod CPU pod (the controller) and return: close the laptop
    campaign status [FILE] progress and money, live (a detached campaign's from its controller or its ledger)
    campaign pull FILE     install every published LoRA of a detached campaign into ComfyUI
    campaign stop FILE     stop a detached campaign: its controller and every job pod it started
    """


def _console(*, stderr: bool = False) -> Any:
    from ..console import make_console

    return make_console(stderr=stderr)


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

    console = _console(stderr=as_json)
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
@click.option("-y", "--yes", is_flag=True, help="Rent without asking (the plan and estimate are still printed).")
@click.option("--detach", is_flag=True,
              help="Run it on a small RunPod CPU pod (the controller, its cost within the budget) and return; needs "
                   "hf_namespace. Again after a lost controller: a new one adopts the running and published jobs.")
def run_cmd(file: Path, replan: bool, yes: bool, detach: bool) -> None:
    """Run FILE's campaign: concurrent jobs, each on its planned GPU, never past the budget. Run again to resume."""
    if detach:
        _run_detached(file, yes)
        return
    from filelock import FileLock, Timeout

    from ..campaign.executor import Executor, plan_records
    from ..campaign.planning import refuse_unless_fits
    from ..campaign.records import CampaignRecords
    from ..confirm import ask
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
            if len(done) < len(c.jobs):  # nothing left: nothing to rent, nothing to ask
                ask([f"  the remaining {len(c.jobs) - len(done)} job(s) rent GPUs within the budget "
                     f"{usd(c.settings.budget_usd)}"], yes=yes, command="campaign run", echo=console.print)
        else:
            spent_usd = _campaign_spent(store, c.name, cloud_name)
            todo = [j.name for j in c.jobs if j.name not in done]
            ctx = _plan(c, cloud, cloud_name, store, spent_usd=spent_usd, jobs=todo)
            _show_plan(console, ctx)
            refuse_unless_fits(ctx)
            ask([], yes=yes, command="campaign run", question=f"Run these {len(todo)} job(s)?")
            records.save_plan(c.name, cloud_name, fingerprint=c.fingerprint, source=str(c.path),
                              budget_usd=c.settings.budget_usd, plan=plan_records(ctx),
                              not_started=ctx.plan.not_started)
        t0 = time.monotonic()
        from ..campaign.watch import job_warnings, watching

        with watching(console, c.name, cloud_name) as say:
            outcome = Executor(c, cloud, store, records, say).run()
        console.print()
        for row in records.jobs(c.name, cloud_name):  # what each job warned about, not only where its log is
            for line in job_warnings(row.get("log_path")):
                console.print(f"  {row['job']}: {line}", markup=False)
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


def _run_detached(file: Path, yes: bool) -> None:
    from ..campaign.managed import detach
    from ..money import usd

    console = _console()
    c, cloud, written, _ = _setup(file)
    for folder in written:
        console.print(f"  generated sample images in {folder}")
    started = detach(c, cloud, yes=yes, say=console.print)
    console.print(f"campaign [bold]{c.name}[/bold] runs on its controller pod {started.pod_id} "
                  f"({started.offer.flavor_id}, ${started.offer.price_per_hr:.3f}/h; jobs budget "
                  f"{usd(started.jobs_budget_usd, like=c.settings.budget_usd)}, controller reserve "
                  f"{usd(started.reserve_usd, like=c.settings.budget_usd)}): this machine can go")
    console.print(f"  follow:  pistachio-infra campaign status {file}")
    console.print(f"  results: pistachio-infra campaign pull {file}")
    console.print(f"  stop:    pistachio-infra campaign stop {file}")


@campaign.command("stop")
@click.argument("file", type=click.Path(path_type=Path, exists=True))
def stop_cmd(file: Path) -> None:
    """Stop FILE's detached campaign: terminate its controller pod, then every job pod of the campaign."""
    from ..campaign.managed import stop
    from ..campaign.spec import load_campaign
    from ..endpoints import resolve_cloud

    console = _console()
    c = load_campaign(file)
    count = stop(c, resolve_cloud(), console.print)
    console.print(f"campaign {c.name}: {count} pod(s) terminated" if count else
                  f"campaign {c.name}: no live pod (nothing to stop)")


@campaign.command("pull")
@click.argument("file", type=click.Path(path_type=Path, exists=True))
def pull_cmd(file: Path) -> None:
    """Install every published LoRA of FILE's campaign into its ComfyUI folder, renting nothing."""
    from ..campaign.managed import pull
    from ..campaign.spec import load_campaign
    from ..endpoints import resolve_cloud
    from ..errors import PistachioError

    console = _console()
    c = load_campaign(file)
    installed, missing = pull(c, resolve_cloud(), console.print)
    console.print(f"campaign {c.name}: {len(installed)} of {len(c.jobs)} LoRA(s) installed"
                  + (f"; not published (yet): {', '.join(missing)}" if missing else ""))
    if not installed and missing:
        raise PistachioError(f"campaign {c.name}: no job is published yet",
                             f"see `pistachio-infra campaign status {file}`")


def _campaign_spent(store: Any, name: str, cloud_name: str) -> float:
    from ..campaign.ledger import spent

    ids = [j["id"] for j in store.jobs(campaign=name) if j["cloud"] == cloud_name]
    return sum(spent(store, ids).values())


@campaign.command("status")
@click.argument("file", required=False, type=click.Path(path_type=Path, exists=True))
@click.option("--watch", is_flag=True, help="Refresh every 2 seconds until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document on stdout) instead of the table.")
def status_cmd(file: Path | None, watch: bool, as_json: bool) -> None:
    """Progress and money of FILE's campaign (default: every campaign in the state store)."""
    from rich.live import Live

    console = _console()
    name = None
    if file is not None:
        from ..campaign.spec import load_campaign

        loaded = load_campaign(file)
        name = loaded.name
        managed = _managed(loaded)
        if managed is not None:
            if as_json:
                from ..jsonout import emit

                emit({"campaigns": [managed]})
            else:
                console.print(managed_table(managed))
            return
    if as_json:
        from ..jsonout import emit

        emit({"campaigns": status_data(name)})
        return
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


def status_data(name: str | None) -> list[dict[str, Any]]:
    """Every campaign (or `name`'s) with its jobs: status, tries, GPU, data center, estimate, allowance, spent."""
    from ..campaign.ledger import spent
    from ..campaign.records import CampaignRecords
    from ..state import Store

    store, records = Store(), CampaignRecords()
    try:
        out = []
        for c in records.campaigns():
            if name is not None and c["name"] != name:
                continue
            jobs = store.jobs(campaign=c["name"])
            by_name: dict[str, float] = {}
            per_id = spent(store, [j["id"] for j in jobs if j["cloud"] == c["cloud"]])
            for j in jobs:
                if j["id"] in per_id:
                    by_name[j["name"]] = by_name.get(j["name"], 0.0) + per_id[j["id"]]
            rows = [{"job": r["job"], "status": r["status"], "attempts": r["attempts"], "gpu_class": r["gpu_class"],
                     "data_center": r["data_center_id"], "estimate_usd": r["est_usd"],
                     "allowance_usd": r["allowance_usd"], "spent_usd": by_name.get(r["job"], 0.0),
                     "error": r["error"]} for r in records.jobs(c["name"], c["cloud"])]
            out.append({"campaign": c["name"], "cloud": c["cloud"], "status": c["status"],
                        "budget_usd": c["budget_usd"], "spent_usd": sum(by_name.values()), "jobs": rows})
        return out
    finally:
        records.close()
        store.close()


def status_table(name: str | None) -> Any:
    from rich.table import Table

    from ..money import usd

    campaigns = status_data(name)
    table = Table()
    for col in ("campaign", "job", "status", "try", "GPU", "data center", "estimate", "allowance", "spent", "note"):
        table.add_column(col, justify="right" if col in ("estimate", "allowance", "spent", "try") else "left")
    if not campaigns:
        table.title = "no campaign has run yet" if name is None else f"campaign {name} has not run yet"
    for c in campaigns:
        for r in c["jobs"]:
            table.add_row(c["campaign"], r["job"], r["status"], str(r["attempts"]), r["gpu_class"] or "",
                          r["data_center"] or "any", usd(r["estimate_usd"] or 0, like=c["budget_usd"]),
                          usd(r["allowance_usd"], like=c["budget_usd"]) if r["allowance_usd"] else "",
                          usd(r["spent_usd"], like=c["budget_usd"]), r["error"] or "")
        table.add_section()
        table.add_row(c["campaign"], "total", c["status"], "", "", c["cloud"], "", f"budget {usd(c['budget_usd'])}",
                      usd(c["spent_usd"], like=c["budget_usd"]), "")
    return table


def _managed(c: Any) -> dict[str, Any] | None:
    """A detached campaign's status in status_data's shape (+ `managed`), or None when it never ran detached."""
    if not c.project.project.hf_namespace:
        return None
    from ..campaign.managed import managed_status
    from ..endpoints import resolve_cloud

    cloud = resolve_cloud()
    data = managed_status(c, cloud)
    if data is None:
        return None
    keys = ("job", "status", "attempts", "gpu_class", "data_center", "estimate_usd", "allowance_usd", "spent_usd",
            "error")
    jobs = [{k: j.get(k) for k in keys} for j in data.get("jobs", [])]
    for j in jobs:
        j["attempts"], j["spent_usd"] = int(j["attempts"] or 0), float(j["spent_usd"] or 0.0)
    controller = data.get("controller") or {}
    return {"campaign": c.name, "cloud": cloud.name, "status": data.get("status", "unknown"),
            "budget_usd": float(data.get("budget_usd") or c.settings.budget_usd),
            "spent_usd": float(data.get("spent_usd") or 0.0), "jobs": jobs,
            "managed": {"source": data.get("source", ""), "controller_pod": controller.get("pod_id"),
                        "controller_usd": float(data.get("controller_usd") or 0.0),
                        "reserve_usd": float(data.get("reserve_usd") or 0.0),
                        "prior_usd": float(data.get("prior_usd") or 0.0), "adopted": list(data.get("adopted", []))}}


def managed_table(c: dict[str, Any]) -> Any:
    from rich.table import Table

    from ..money import usd

    m = c["managed"]
    budget = c["budget_usd"]
    table = Table(title=f"campaign {c['campaign']} (detached): {c['status']}, from the {m['source']}")
    for col in ("job", "status", "try", "GPU", "data center", "estimate", "allowance", "spent", "note"):
        table.add_column(col, justify="right" if col in ("estimate", "allowance", "spent", "try") else "left")
    for r in c["jobs"]:
        table.add_row(r["job"], r["status"], str(r["attempts"]), r["gpu_class"] or "", r["data_center"] or "any",
                      usd(r["estimate_usd"] or 0, like=budget),
                      usd(r["allowance_usd"], like=budget) if r["allowance_usd"] else "",
                      usd(r["spent_usd"], like=budget), r["error"] or "")
    table.add_section()
    table.add_row("controller", m["controller_pod"] or "", "", "", "", "", usd(m["reserve_usd"], like=budget),
                  usd(m["controller_usd"], like=budget), "reserved / spent")
    if m["prior_usd"]:
        table.add_row("earlier", "", "", "", "", "", "", usd(m["prior_usd"], like=budget), "lost controllers' pods")
    table.add_row("total", c["status"], "", "", c["cloud"], "", f"budget {usd(budget)}",
                  usd(c["spent_usd"], like=budget), "")
    return table
