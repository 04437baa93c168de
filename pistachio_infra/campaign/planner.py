"""The campaign planner: one GPU class and data center per job, chosen by predicted cost *per job* (price × the
class's predicted duration), not by the cheapest $/hr, subject to:

- stock: an offer (class × data center) takes at most as many of the campaign's jobs as its stock level promises
  (LOW 1, MEDIUM 3, HIGH 7 GPUs; the lower end of each level's range);
- the deadline: the jobs, launched longest first onto `max_concurrent` slots (what the executor does), must end
  within it;
- each job's own `budget_usd`.

Jobs in the network volume's data center start warm (model cache on the volume) and carry the volume's share; the
planner puts jobs there when that is cheaper, so warm jobs are grouped in one data center.

The search is exact (branch and bound over per-job options, cost lower bound + a makespan bound) up to a node
limit, seeded with a greedy plan; past the limit the best plan found is returned and marked `exact=False`.
A plan whose expected total is over the budget is returned with `fits=False` and the jobs that would fit.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..runpod.port import Stock
from .costmodel import Estimate, JobDemand, Timings, estimate

STOCK_CAPACITY = {Stock.HIGH: 7, Stock.MEDIUM: 3, Stock.LOW: 1, Stock.NONE: 0}
NODE_LIMIT = 200_000


@dataclass(frozen=True)
class PlanOffer:
    """Where a job can run: a GPU class in a data center (None: RunPod chooses) at a price, with a capacity."""

    gpu_class: str
    data_center_id: str | None
    price_per_hr: float
    capacity: int


@dataclass(frozen=True)
class Option:
    job: str
    offer: PlanOffer
    estimate: Estimate

    @property
    def cost(self) -> float:
        return self.estimate.expected_usd

    @property
    def seconds(self) -> float:
        return self.estimate.expected_s


@dataclass(frozen=True)
class Assignment:
    job: str
    gpu_class: str
    data_center_id: str | None
    price_per_hr: float
    warm: bool
    estimate: Estimate


@dataclass
class Plan:
    assignments: list[Assignment]  # in launch order (longest first)
    budget_usd: float
    max_concurrent: int
    deadline_s: float | None
    makespan_s: float
    exact: bool = True
    unplaceable: dict[str, str] = field(default_factory=dict)  # job -> why no option exists
    objective: str = "job"

    @property
    def usd(self) -> tuple[float, float, float]:
        es = [a.estimate.usd for a in self.assignments]
        return (sum(e[0] for e in es), sum(e[1] for e in es), sum(e[2] for e in es))

    @property
    def fits(self) -> bool:
        return not self.unplaceable and self.usd[1] <= self.budget_usd + 1e-9 and self.meets_deadline

    @property
    def meets_deadline(self) -> bool:
        return self.deadline_s is None or self.makespan_s <= self.deadline_s + 1e-6

    def by_job(self) -> dict[str, Assignment]:
        return {a.job: a for a in self.assignments}

    def would_fit(self, order: Sequence[str]) -> list[str]:
        """Jobs (in `order`, the campaign's) whose planned expected costs add up within the budget."""
        chosen, total = [], 0.0
        plan = self.by_job()
        for name in order:
            a = plan.get(name)
            if a is not None and total + a.estimate.expected_usd <= self.budget_usd:
                chosen.append(name)
                total += a.estimate.expected_usd
        return chosen


def plan_offers(offers: Sequence[object]) -> list[PlanOffer]:
    """pods.Offer (live price + stock per data center) → PlanOffer; offers without a price or stock are dropped."""
    out = []
    for o in offers:
        price = getattr(o, "price_per_hr", None)
        cap = STOCK_CAPACITY.get(getattr(o, "stock", Stock.NONE), 0)
        if price is None or price <= 0 or cap == 0:
            continue
        out.append(PlanOffer(o.gpu_class, o.data_center_id, float(price), cap))  # type: ignore[attr-defined]
    return out


def options_for(demand: JobDemand, offers: Sequence[PlanOffer], timings: Timings, *,
                volume_dc: str | None = None, volume_gb: float = 0.0) -> list[Option]:
    """Every offer this job may use, with its estimate, cheapest first."""
    out = []
    for offer in offers:
        if offer.gpu_class not in demand.classes:
            continue
        if demand.data_centers and offer.data_center_id not in demand.data_centers:
            continue
        warm = volume_dc is not None and offer.data_center_id == volume_dc
        est = estimate(demand, offer.gpu_class, offer.price_per_hr, timings, warm=warm,
                       volume_gb=volume_gb if warm else 0.0)
        if demand.budget_usd is not None and est.expected_usd > demand.budget_usd:
            continue
        out.append(Option(demand.name, offer, est))
    out.sort(key=lambda o: (o.cost, o.seconds))
    return out


def list_makespan(durations: Sequence[float], slots: int) -> float:
    """End of the last job when `durations` are started in this order, each on the first free slot."""
    free = [0.0] * max(1, slots)
    for d in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + d)
    return max(free)


def launch_order(options: Sequence[Option]) -> list[Option]:
    return sorted(options, key=lambda o: (-o.seconds, o.job))


def _makespan(options: Sequence[Option], slots: int) -> float:
    return list_makespan([o.seconds for o in launch_order(options)], slots)


def _capacity_ok(options: Sequence[Option]) -> bool:
    used: dict[PlanOffer, int] = {}
    for o in options:
        used[o.offer] = used.get(o.offer, 0) + 1
        if used[o.offer] > o.offer.capacity:
            return False
    return True


def _greedy(choices: list[list[Option]], slots: int, deadline: float | None) -> list[Option] | None:
    """Cheapest option per job within capacity, then the cheapest speed-ups until the deadline is met."""
    picked: list[Option] = []
    used: dict[PlanOffer, int] = {}
    for opts in choices:
        opt = next((o for o in opts if used.get(o.offer, 0) < o.offer.capacity), None)
        if opt is None:
            return None
        used[opt.offer] = used.get(opt.offer, 0) + 1
        picked.append(opt)
    while deadline is not None and _makespan(picked, slots) > deadline:
        current = _makespan(picked, slots)
        best, best_ratio = None, 0.0
        for i, opts in enumerate(choices):
            for o in opts:
                if o.seconds >= picked[i].seconds:
                    continue
                trial = [*picked[:i], o, *picked[i + 1:]]
                if not _capacity_ok(trial):
                    continue
                # the makespan first; when no single move shortens it (several lanes end together), the seconds
                # saved on the way there
                gain = (current - _makespan(trial, slots)) + 1e-3 * (picked[i].seconds - o.seconds)
                if gain <= 0:
                    continue
                ratio = gain / max(1e-9, o.cost - picked[i].cost)
                if best is None or ratio > best_ratio:
                    best, best_ratio = (i, o), ratio
        if best is None:
            return picked  # the deadline cannot be met; the fastest found is returned (plan.meets_deadline False)
        picked[best[0]] = best[1]
    return picked


def _search(choices: list[list[Option]], slots: int, deadline: float | None, incumbent: list[Option] | None
            ) -> tuple[list[Option] | None, bool]:
    """Branch and bound: minimise the summed expected cost subject to capacity and the deadline."""
    n = len(choices)
    min_cost = [min(o.cost for o in opts) for opts in choices]
    min_secs = [min(o.seconds for o in opts) for opts in choices]
    rest_cost = [sum(min_cost[i:]) for i in range(n + 1)]
    rest_secs = [sum(min_secs[i:]) for i in range(n + 1)]
    feasible_incumbent = incumbent is not None and (deadline is None or _makespan(incumbent, slots) <= deadline)
    best = list(incumbent) if feasible_incumbent and incumbent else None
    best_cost = sum(o.cost for o in best) if best else float("inf")
    nodes = 0
    exact = True
    used: dict[PlanOffer, int] = {}
    picked: list[Option] = []

    def walk(i: int, cost: float, secs: float, longest: float) -> None:
        nonlocal best, best_cost, nodes, exact
        nodes += 1
        if nodes > NODE_LIMIT:
            exact = False
            return
        if cost + rest_cost[i] >= best_cost - 1e-12:
            return
        if deadline is not None and max(longest, (secs + rest_secs[i]) / slots) > deadline + 1e-6:
            return
        if i == n:
            if deadline is None or _makespan(picked, slots) <= deadline + 1e-6:
                best, best_cost = list(picked), cost
            return
        for o in choices[i]:
            if used.get(o.offer, 0) >= o.offer.capacity:
                continue
            used[o.offer] = used.get(o.offer, 0) + 1
            picked.append(o)
            walk(i + 1, cost + o.cost, secs + o.seconds, max(longest, o.seconds))
            picked.pop()
            used[o.offer] -= 1
            if not exact:
                return

    walk(0, 0.0, 0.0, 0.0)
    return best, exact


def plan(demands: Sequence[JobDemand], offers: Sequence[PlanOffer], timings: Timings, *, budget_usd: float,
         max_concurrent: int, deadline_s: float | None = None, volume_dc: str | None = None,
         volume_gb: float = 0.0, objective: str = "job") -> Plan:
    """The cheapest plan per job (`objective="job"`), or the naive one that takes each job's lowest $/hr offer
    (`objective="hourly"`, for comparison)."""
    unplaceable: dict[str, str] = {}
    choices: list[list[Option]] = []
    for d in demands:
        opts = options_for(d, offers, timings, volume_dc=volume_dc, volume_gb=volume_gb)
        if not opts:
            why = "no offer with stock for its GPU classes" + (" within its budget_usd" if d.budget_usd else "")
            unplaceable[d.name] = why
            continue
        if objective == "hourly":
            opts.sort(key=lambda o: (o.offer.price_per_hr, o.cost))
        choices.append(opts)
    slots = max(1, max_concurrent)
    if objective == "hourly":
        picked, exact = _greedy([[*c] for c in choices], slots, None), True
    else:
        order = sorted(range(len(choices)), key=lambda i: -(choices[i][-1].cost - choices[i][0].cost))
        ordered = [choices[i] for i in order]
        greedy = _greedy(ordered, slots, deadline_s)
        picked, exact = _search(ordered, slots, deadline_s, greedy)
        if picked is None:  # nothing meets the deadline (or capacity): show the fastest we found
            picked = greedy
        if picked is None:
            for opts in choices:
                unplaceable.setdefault(opts[0].job, "not enough stock for every job at once")
            picked = []
    picked = launch_order(picked or [])
    return Plan(
        assignments=[Assignment(o.job, o.offer.gpu_class, o.offer.data_center_id, o.offer.price_per_hr,
                                o.estimate.warm, o.estimate) for o in picked],
        budget_usd=budget_usd, max_concurrent=slots, deadline_s=deadline_s,
        makespan_s=list_makespan([o.seconds for o in picked], slots) if picked else 0.0,
        exact=exact, unplaceable=unplaceable, objective=objective,
    )
