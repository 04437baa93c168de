"""Estimate and confirm before renting: `train`, `up` and `campaign run` print what they are about to rent and what
it should cost, then ask on a terminal (like `sky launch`). `--yes` skips the question; with no terminal and no
`--yes` the command refuses in one line, renting nothing."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import PistachioError, UsageError

Band = tuple[float, float, float]  # low, expected, high


class DeclinedError(PistachioError):
    """The user answered no: nothing was rented."""


@dataclass(frozen=True)
class RentalPlan:
    """What a command is about to rent, and what it should cost."""

    what: str  # "train pip", "up (interactive pod)"
    gpu_class: str
    data_center: str | None
    price_per_hr: float
    seconds: Band | None  # expected duration band (None: open-ended, e.g. `up`)
    usd: Band
    budget: str  # the hard cap in words: "$3.00 (budget_usd)", "12 h watchdog ($9.48)"
    fallback: tuple[str, ...] = ()  # further offers tried when the first has no capacity
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        from .money import per_hour, usd

        where = f"{self.gpu_class} in {self.data_center or 'any data center'}"
        out = [f"plan: {self.what}",
               f"  GPU        {where} at {per_hour(self.price_per_hr)}"]
        if self.fallback:
            out.append(f"  fallback   {', '.join(self.fallback)}")
        if self.seconds is not None:
            low, mid, high = self.seconds
            out.append(f"  duration   about {duration(mid)} ({duration(low)}–{duration(high)})")
        low_usd, mid_usd, high_usd = self.usd
        out.append(f"  cost       {usd(low_usd, like=mid_usd)}–{usd(high_usd, like=mid_usd)} "
                   f"(expected {usd(mid_usd)})")
        out.append(f"  limit      {self.budget}")
        out += [f"  note       {n}" for n in self.notes]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "gpu_class": self.gpu_class, "data_center": self.data_center,
                "price_per_hr": self.price_per_hr, "seconds": list(self.seconds) if self.seconds else None,
                "usd": list(self.usd), "budget": self.budget, "fallback": list(self.fallback)}


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def interactive() -> bool:
    """A person can answer: stdin and stderr are terminals."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def ask(lines: Sequence[str], *, yes: bool, command: str, echo: Callable[[str], None] | None = None,
        question: str = "Rent it?") -> None:
    """Show `lines` (the plan), then go on when `yes`, ask on a terminal, or refuse without one."""
    import click

    say = echo or (lambda line: click.echo(line, err=True))
    for line in lines:
        say(line)
    if yes:
        return
    if not interactive():
        raise UsageError(f"{command} would rent a GPU and there is no terminal to ask",
                         "add --yes to confirm non-interactively (nothing was rented)")
    if not click.confirm(question, default=False, err=True):
        raise DeclinedError("not confirmed", "nothing was rented")


def plan_offer(api: Any, classes: Sequence[str], *, data_centers: Sequence[str] = (),
               volume_dc: str | None = None) -> tuple[Any, list[Any], list[str]]:
    """The offer the pod will most likely land on (the first the fallback tries), the rest in order, and notes."""
    from .pods.offers import candidate_offers, live_offers
    from .runpod.port import NoCapacityError

    try:
        offers = candidate_offers(api.list_gpu_types(), classes, data_centers=data_centers, volume_dc=volume_dc)
        return offers[0], offers[1:], []
    except NoCapacityError:
        priced = [o for o in live_offers(api, classes) if o.price_per_hr]
        if not priced:
            raise
        return priced[0], priced[1:], ["no stock right now: provisioning falls back and retries as usual"]


def _fallback(rest: Sequence[Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f"{o.gpu_class} ({o.data_center_id or 'any'})" for o in rest[:4]))


def train_plan(job: Any, classes: Sequence[str], cloud: Any, store: Any, *, max_hours: float,
               volume_dc: str | None = None) -> RentalPlan:
    """`train`: the cost model's estimate for this job on the first offer of its fallback order."""
    from .campaign.costmodel import demand_for, estimate, timings_for
    from .money import usd
    from .runpod import connect

    api = connect(cloud)
    try:
        first, rest, notes = plan_offer(api, classes, volume_dc=volume_dc)
    finally:
        close = getattr(api, "close", None)
        if close is not None:
            close()
    price = float(first.price_per_hr or 0.0)
    demand = demand_for(job, tuple(classes))
    est = estimate(demand, first.gpu_class, price, timings_for(cloud.name, store),
                   warm=volume_dc is not None)
    cap_usd = price * max_hours
    budget = f"watchdog ends the pod after {max_hours:g} h (≤ {usd(cap_usd)})"
    if job.budget_usd:
        budget = f"budget_usd {usd(job.budget_usd)}; " + budget
    return RentalPlan(what=f"train {job.name} ({demand.steps} steps, {demand.images} images)",
                      gpu_class=first.gpu_class, data_center=first.data_center_id, price_per_hr=price,
                      seconds=est.seconds, usd=est.usd, budget=budget, fallback=_fallback(rest), notes=notes)


def pod_plan(api: Any, classes: Sequence[str], *, what: str, max_hours: float, store: Any, cloud_name: str,
             data_centers: Sequence[str] = (), volume_dc: str | None = None, use_s: float = 3600.0) -> RentalPlan:
    """A pod without a training estimate (`up`, `rebuild`, `lock`): from provision + bootstrap (low) through
    `use_s` of use (expected) to the watchdog's max runtime (high)."""
    from .campaign.costmodel import timings_for
    from .money import usd

    first, rest, notes = plan_offer(api, classes, data_centers=data_centers, volume_dc=volume_dc)
    price = float(first.price_per_hr or 0.0)
    t = timings_for(cloud_name, store)
    ready = t.provision_s[1] + (t.bootstrap_warm_s if volume_dc else t.bootstrap_cold_s)[1]
    high = max_hours * 3600
    return RentalPlan(what=what, gpu_class=first.gpu_class, data_center=first.data_center_id, price_per_hr=price,
                      seconds=None,
                      usd=(price * ready / 3600, price * min(ready + use_s, high) / 3600, price * high / 3600),
                      budget=f"watchdog ends the pod after {max_hours:g} h (≤ {usd(price * max_hours)})",
                      fallback=_fallback(rest),
                      notes=[*notes, f"ready in about {duration(ready)}; expected = ready + {duration(use_s)} of use"])
