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
    demands = [demand_for(j, classes, tuple(settings.data_centers)) for j in selected]
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
    """A plan over budget (or past the deadline, or with a job that cannot be placed) is refused, naming what fits."""
    p = ctx.plan
    if p.unplaceable:
        job, why = next(iter(p.unplaceable.items()))
        raise OverBudgetError(f"campaign {ctx.campaign.name}: job {job!r} cannot be placed ({why})",
                              "allow more GPU classes or data centers, raise the job's budget_usd, or retry later")
    low, mid, high = p.usd
    if mid > p.budget_usd:
        order = [j.name for j in ctx.campaign.jobs]
        fit = p.would_fit(order)
        fit_usd = sum(p.by_job()[n].estimate.expected_usd for n in fit)
        what = (f"with {usd(p.budget_usd)} these {len(fit)} job(s) fit: {', '.join(fit)} ({usd(fit_usd)})"
                if fit else f"not even one job fits in {usd(p.budget_usd)}")
        raise OverBudgetError(
            f"campaign {ctx.campaign.name}: the cheapest plan costs {usd(mid)} ({usd(low)}-{usd(high)}) for "
            f"{len(p.assignments)} jobs, over the budget of {usd(p.budget_usd)}; {what}",
            f"raise budget_usd to at least {mid:.4f}, or list only the jobs that fit in [campaign].jobs",
        )
    if not p.meets_deadline:
        raise OverBudgetError(
            f"campaign {ctx.campaign.name}: the fastest plan found takes {p.makespan_s / 3600:.1f} h, past the "
            f"deadline of {(p.deadline_s or 0) / 3600:.1f} h",
            "raise deadline_hours or max_concurrent, or allow faster GPU classes",
        )


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
    lines = [f"budget {usd(p.budget_usd)}: plan {usd(mid)} ({usd(low)}-{usd(high)}), "
             + ("fits" if mid <= p.budget_usd else "OVER BUDGET")
             + (f"; high end {usd(high)} is over budget: the executor stops work before overspending"
                if mid <= p.budget_usd < high else "")]
    if naive.assignments and not naive.unplaceable:
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


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f}s"
    if h < 1:
        return f"{h * 60:.0f}m"
    return f"{h:.1f}h"
