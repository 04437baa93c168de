"""The planner fed with live data: each job's demand (its dataset, read locally), live prices and stock per data
center, the env stack's network volume (warm model cache) and our timing model refined from past runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, PistachioError
from ..money import usd
from .costmodel import JobDemand, Timings, demand_for, timings_for
from .planner import Plan, PlanOffer, plan, plan_offers
from .spec import Campaign


class OverBudgetError(PistachioError):
    pass


@dataclass(frozen=True)
class Volume:
    volume_id: str
    data_center_id: str
    size_gb: float


@dataclass
class PlanContext:
    campaign: Campaign
    demands: list[JobDemand]
    offers: list[PlanOffer]
    timings: Timings
    volume: Volume | None
    plan: Plan
    naive: Plan  # cheapest $/hr per job, for comparison


def allowed_classes(campaign: Campaign) -> tuple[str, ...]:
    from ..catalog import class_names

    gpu = campaign.settings.gpu
    return tuple(class_names()) if gpu == ["auto"] else tuple(gpu)


def campaign_volume(campaign: Campaign) -> Volume | None:
    wanted = campaign.settings.volume
    if wanted is False:
        return None
    from ..stacks import outputs

    env = outputs()
    if env is None:
        if wanted:
            raise ConfigError("[campaign] volume = true, but no network volume exists (the env stack is not deployed)",
                              "run `pistachio-infra env up` first, or set volume = false")
        return None
    return Volume(env.volume_id, env.data_center_id, float(env.volume_gb or 100))


def build_plan(campaign: Campaign, api: Any, cloud_name: str, store: Any | None = None,
               jobs: list[str] | None = None, budget_usd: float | None = None,
               timings_cloud: str | None = None) -> PlanContext:
    """Plan `jobs` (default: all) of the campaign against `budget_usd` (default: the campaign's). `timings_cloud`
    picks another cloud's timing model (e.g. RunPod's timings against the sandbox's prices, as a preview)."""
    from ..pods.offers import live_offers

    settings = campaign.settings
    classes = allowed_classes(campaign)
    selected = [j for j in campaign.jobs if jobs is None or j.name in jobs]
    from .sizing import dataset_sizes

    sizes = dataset_sizes(selected)
    demands = [demand_for(j, classes, tuple(settings.data_centers), sizes[j.name]) for j in selected]
    offers = plan_offers(live_offers(api, classes))
    if settings.data_centers:
        offers = [o for o in offers if o.data_center_id in settings.data_centers]
    volume = campaign_volume(campaign)
    timings = timings_for(timings_cloud or cloud_name, store)
    kwargs = dict(budget_usd=settings.budget_usd if budget_usd is None else budget_usd,
                  max_concurrent=settings.max_concurrent,
                  deadline_s=settings.deadline_hours * 3600 if settings.deadline_hours else None,
                  volume_dc=volume.data_center_id if volume else None, volume_gb=volume.size_gb if volume else 0.0)
    best = plan(demands, offers, timings, **kwargs)  # type: ignore[arg-type]
    naive = plan(demands, offers, timings, objective="hourly", **kwargs)  # type: ignore[arg-type]
    return PlanContext(campaign, demands, offers, timings, volume, best, naive)


def refuse_unless_fits(ctx: PlanContext) -> None:
    """A campaign with nothing to run is refused, saying which constraint fails (placement, deadline, budget) and
    what would fix it. A budget that fits only some jobs is no refusal: those jobs run, the others do not start."""
    p = ctx.plan
    if p.refusal is not None:
        raise OverBudgetError(f"campaign {ctx.campaign.name}: {p.refusal.cause}", p.refusal.fix)
    if not p.runnable:  # a guard: the planner sets a refusal whenever it has nothing to run
        raise OverBudgetError(f"campaign {ctx.campaign.name}: no plan fits the budget and the deadline",
                              "raise budget_usd or deadline_hours")


def plan_rows(ctx: PlanContext) -> list[dict[str, Any]]:
    """One row per job for display: class, data center, warm cache, time and cost (expected and band)."""
    rows = []
    for a in ctx.plan.assignments:
        e = a.estimate
        rows.append({
            "job": a.job, "gpu": a.gpu_class, "dc": a.data_center_id or "any", "cache": "warm" if a.warm else "cold",
            "price": a.price_per_hr, "hours": e.seconds[1] / 3600, "hours_low": e.seconds[0] / 3600,
            "hours_high": e.seconds[2] / 3600, "usd": e.usd[1], "usd_low": e.usd[0], "usd_high": e.usd[2],
        })
    return rows


def plan_table(ctx: PlanContext) -> Any:
    """The plan as a rich Table (what `campaign plan` prints)."""
    from rich.table import Table

    p = ctx.plan
    table = Table(title=f"campaign {ctx.campaign.name}: {len(p.assignments)} jobs, up to {p.max_concurrent} at once")
    for col, just in (("job", "left"), ("GPU", "left"), ("data center", "left"), ("cache", "left"),
                      ("$/h", "right"), ("time", "right"), ("cost", "right"), ("range", "right")):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for r in plan_rows(ctx):
        table.add_row(r["job"], r["gpu"], r["dc"], r["cache"], f"{r['price']:.2f}", _hours(r["hours"]),
                      usd(r["usd"]), f"{usd(r['usd_low'])}-{usd(r['usd_high'])}")
    low, mid, high = p.usd
    table.add_section()
    table.add_row("total", "", "", "", "", _hours(p.makespan_s / 3600) + " wall", usd(mid),
                  f"{usd(low)}-{usd(high)}")
    return table


def plan_summary(ctx: PlanContext) -> list[str]:
    p, naive = ctx.plan, ctx.naive
    low, mid, high = p.usd
    if p.refusal is not None:
        lines = [f"REFUSED ({p.refusal.constraint}): {p.refusal.cause}"]
    elif p.not_started:
        lines = [f"budget {usd(p.budget_usd)}: {len(p.assignments)} of {len(p.assignments) + len(p.not_started)} "
                 f"jobs fit, plan {usd(mid)} ({usd(low)}-{usd(high)}); not started: {', '.join(p.not_started)} "
                 f"(all jobs: {usd(p.full_usd or 0.0)})"]
    else:
        lines = [f"budget {usd(p.budget_usd)}: plan {usd(mid)} ({usd(low)}-{usd(high)}), fits"]
    if p.refusal is None and mid <= p.budget_usd < high:
        lines.append(f"high end {usd(high)} is over budget: a job starts only when its share is free, and the "
                     "executor stops work before overspending")
    if naive.assignments and not naive.unplaceable and not p.not_started and p.refusal is None:
        diff = naive.usd[1] - mid
        lines.append(f"cheapest $/hr per job instead ({', '.join(sorted({a.gpu_class for a in naive.assignments}))})"
                     f": {usd(naive.usd[1])}" + (f", {usd(diff)} more" if diff > 0.00005 else "")
                     + ("" if naive.meets_deadline else
                        f", {naive.makespan_s / 3600:.1f} h: past the deadline"))
    if ctx.volume:
        warm = sum(1 for a in p.assignments if a.warm)
        lines.append(f"network volume {ctx.volume.volume_id} in {ctx.volume.data_center_id}: {warm} job(s) start "
                     "with a warm model cache")
    observed = sum(ctx.timings.observed_runs.values())
    lines.append(f"timing model: {ctx.timings.cloud} table" + (f" refined by {observed} finished run(s)"
                                                                 if observed else " (no finished runs yet)"))
    if not p.exact:
        lines.append("search stopped at its node limit: the plan is the best found, not proven optimal")
    return lines


def plan_json(ctx: PlanContext) -> dict[str, Any]:
    """The plan as data (`campaign plan --json`), shaped by PLAN_SCHEMA."""
    p = ctx.plan
    low, mid, high = p.usd
    return {
        "schema": "pistachio-infra/campaign-plan/v1",
        "campaign": ctx.campaign.name,
        "status": "refused" if p.refusal else ("partial" if p.not_started else "fits"),
        "refusal": None if p.refusal is None else {"constraint": p.refusal.constraint, "cause": p.refusal.cause,
                                                     "fix": p.refusal.fix},
        "budget_usd": p.budget_usd,
        "max_concurrent": p.max_concurrent,
        "deadline_s": p.deadline_s,
        "makespan_s": p.makespan_s,
        "exact": p.exact,
        "usd": {"low": low, "expected": mid, "high": high},
        "all_jobs_usd": p.full_usd if p.full_usd is not None else (None if p.refusal else mid),
        "timings": ctx.timings.cloud,
        "jobs": [{"job": a.job, "gpu_class": a.gpu_class, "data_center_id": a.data_center_id,
                  "price_per_hr": a.price_per_hr, "warm": a.warm, "stock_capacity": a.capacity,
                  "seconds": {"low": a.estimate.seconds[0], "expected": a.estimate.seconds[1],
                              "high": a.estimate.seconds[2]},
                  "usd": {"low": a.estimate.usd[0], "expected": a.estimate.usd[1], "high": a.estimate.usd[2]}}
                 for a in p.assignments],
        "not_started": [{"job": job, "reason": why} for job, why in p.not_started.items()],
    }


def _band_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["low", "expected", "high"], "additionalProperties": False,
            "properties": {k: {"type": "number", "minimum": 0} for k in ("low", "expected", "high")}}


PLAN_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "pistachio-infra campaign plan",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema", "campaign", "status", "refusal", "budget_usd", "max_concurrent", "deadline_s",
                 "makespan_s", "exact", "usd", "all_jobs_usd", "timings", "jobs", "not_started"],
    "properties": {
        "schema": {"const": "pistachio-infra/campaign-plan/v1"},
        "campaign": {"type": "string"},
        "status": {"enum": ["fits", "partial", "refused"]},
        "refusal": {"oneOf": [{"type": "null"}, {
            "type": "object", "additionalProperties": False, "required": ["constraint", "cause", "fix"],
            "properties": {"constraint": {"enum": ["placement", "deadline", "budget"]},
                           "cause": {"type": "string"}, "fix": {"type": "string"}}}]},
        "budget_usd": {"type": "number", "minimum": 0},
        "max_concurrent": {"type": "integer", "minimum": 1},
        "deadline_s": {"type": ["number", "null"]},
        "makespan_s": {"type": "number", "minimum": 0},
        "exact": {"type": "boolean"},
        "usd": _band_schema(),
        "all_jobs_usd": {"type": ["number", "null"]},
        "timings": {"type": "string"},
        "jobs": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["job", "gpu_class", "data_center_id", "price_per_hr", "warm", "stock_capacity", "seconds",
                         "usd"],
            "properties": {"job": {"type": "string"}, "gpu_class": {"type": "string"},
                           "data_center_id": {"type": ["string", "null"]}, "price_per_hr": {"type": "number"},
                           "warm": {"type": "boolean"}, "stock_capacity": {"type": "integer", "minimum": 1},
                           "seconds": _band_schema(), "usd": _band_schema()}}},
        "not_started": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["job", "reason"],
            "properties": {"job": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f}s"
    if h < 1:
        return f"{h * 60:.0f}m"
    return f"{h:.1f}h"
