"""The campaign planner: one GPU class and data center per job, chosen by predicted cost *per job* (price × the
class's predicted duration), not by the cheapest $/hr, subject to:

- stock, per wave of running jobs: an offer (class × data center) runs at most as many of the campaign's jobs *at
  the same time* as its stock level promises (LOW 1, MEDIUM 3, HIGH 7 GPUs; the lower end of each level's range).
  At most `max_concurrent` jobs run at once, so stock limits how fast the campaign goes, never how many jobs it has;
- the deadline: the jobs, launched longest first, each on the first free slot whose offer has stock left (what the
  executor does: `schedule`), must end within it;
- each job's own `budget_usd`;
- the campaign's budget: when the cheapest plan of every job costs more, the plan keeps the most jobs that fit (the
  cheapest of them) and leaves the others `not_started`, so the money finishes jobs instead of starting all of them
  and completing none. A campaign in which not one job fits is refused.

Jobs in the network volume's data center start warm (model cache on the volume) and carry the volume's share; the
planner puts jobs there when that is cheaper, so warm jobs are grouped in one data center.

Without a deadline every job simply takes its cheapest option (exact, instant for any number of jobs). With one,
the search is exact (branch and bound over per-job options, a cost lower bound + makespan bounds) up to a node
limit, seeded with a greedy plan; past the limit the best plan found is returned and marked `exact=False`.
When no plan exists, `Plan.refusal` says which constraint fails and what would fix it.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..money import usd
from ..runpod.port import Stock
from .costmodel import Estimate, JobDemand, Timings, estimate

STOCK_CAPACITY = {Stock.HIGH: 7, Stock.MEDIUM: 3, Stock.LOW: 1, Stock.NONE: 0}
NODE_LIMIT = 200_000  # search nodes for a small campaign; a large one gets fewer (NODE_WORK / jobs, at least
NODE_WORK = 4_000_000  # NODE_FLOOR), since the search seldom proves a plan of hundreds of jobs optimal anyway
NODE_FLOOR = 20_000
EPS = 1e-9


@dataclass(frozen=True)
class PlanOffer:
    """Where a job can run: a GPU class in a data center (None: RunPod chooses) at a price, with the number of GPUs
    its stock promises at once."""

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
    capacity: int = 1  # how many of the campaign's jobs its offer runs at once


@dataclass(frozen=True)
class Refusal:
    """Why no plan can run: the constraint that fails ("placement", "deadline", "budget"), the cause, the fix."""

    constraint: str
    cause: str
    fix: str


@dataclass
class Plan:
    assignments: list[Assignment]  # in launch order (longest first); the jobs that run
    budget_usd: float
    max_concurrent: int
    deadline_s: float | None
    makespan_s: float
    exact: bool = True
    unplaceable: dict[str, str] = field(default_factory=dict)  # job -> why no option exists
    not_started: dict[str, str] = field(default_factory=dict)  # job -> why the budget leaves it out
    full_usd: float | None = None  # expected cost of the cheapest plan of every job, when some are left out
    refusal: Refusal | None = None  # set when nothing can run; the assignments are then only for display
    objective: str = "job"

    @property
    def usd(self) -> tuple[float, float, float]:
        es = [a.estimate.usd for a in self.assignments]
        return (sum(e[0] for e in es), sum(e[1] for e in es), sum(e[2] for e in es))

    @property
    def runnable(self) -> bool:
        """Something to run: no refusal, at least one job, within the budget and the deadline."""
        return (self.refusal is None and not self.unplaceable and bool(self.assignments)
                and self.usd[1] <= self.budget_usd + EPS and self.meets_deadline)

    @property
    def fits(self) -> bool:
        """Every job of the campaign runs within the budget and the deadline."""
        return self.runnable and not self.not_started

    @property
    def meets_deadline(self) -> bool:
        return self.deadline_s is None or self.makespan_s <= self.deadline_s + 1e-6

    def by_job(self) -> dict[str, Assignment]:
        return {a.job: a for a in self.assignments}


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


def launch_order(options: Sequence[Option]) -> list[Option]:
    return sorted(options, key=lambda o: (-o.seconds, o.job))


def schedule(options: Sequence[Option], slots: int, *, stock: bool = True) -> float:
    """When the last job ends if the executor launches `options` longest first, each as soon as one of the `slots`
    is free and (`stock`) its offer runs fewer jobs than its capacity; a job whose offer is full waits while later
    jobs whose offers have stock start. (Each start takes the first waiting job, in launch order, whose offer has
    stock: per-offer queues and a heap of their heads, O(n log n).)"""
    queues: dict[PlanOffer, deque[tuple[int, float]]] = {}
    for index, o in enumerate(launch_order(options)):
        queues.setdefault(o.offer, deque()).append((index, o.seconds))
    cap = {offer: (offer.capacity if stock else len(options)) for offer in queues}
    busy = dict.fromkeys(queues, 0)
    ready = [(q[0][0], n, offer) for n, (offer, q) in enumerate(queues.items())]  # offers with stock and a queue
    heapq.heapify(ready)
    keys = {offer: n for n, offer in enumerate(queues)}
    running: list[tuple[float, int, PlanOffer]] = []
    left = len(options)
    now = end = 0.0
    while left:
        while len(running) < slots and ready:
            _, n, offer = heapq.heappop(ready)
            _, seconds = queues[offer].popleft()
            left -= 1
            busy[offer] += 1
            heapq.heappush(running, (now + seconds, left, offer))  # `left` is unique: no tie reaches the offer
            end = max(end, now + seconds)
            if queues[offer] and busy[offer] < cap[offer]:
                heapq.heappush(ready, (queues[offer][0][0], n, offer))
        if not left:
            break
        now = running[0][0]
        while running and running[0][0] <= now:
            _, _, offer = heapq.heappop(running)
            busy[offer] -= 1
            if queues[offer] and busy[offer] == cap[offer] - 1:  # it was full: its queue may start again
                heapq.heappush(ready, (queues[offer][0][0], keys[offer], offer))
    return end


def _cost(options: Sequence[Option]) -> float:
    return sum(o.cost for o in options)


def _cheapest_within(choices: list[list[Option]], budget: float | None) -> list[Option]:
    """No deadline: every job on its cheapest option; within `budget`, the most jobs (the cheapest ones) that fit.
    Exact: with no deadline the jobs do not interact (stock only delays them)."""
    best = [opts[0] for opts in choices]
    if budget is None or _cost(best) <= budget + EPS:
        return best
    picked, total = [], 0.0
    for o in sorted(best, key=lambda o: o.cost):  # stable: ties keep the campaign's order
        if total + o.cost > budget + EPS:
            break
        picked.append(o)
        total += o.cost
    return picked


def _greedy(choices: list[list[Option]], slots: int, deadline: float) -> list[Option]:
    """Cheapest option per job, then the cheapest speed-ups until the deadline is met (or no move helps). Small
    campaigns weigh each move by the makespan it saves; large ones by the job seconds it saves per extra dollar
    (a heap of each job's best move: one schedule per move instead of one per candidate)."""
    picked = [opts[0] for opts in choices]
    current = schedule(picked, slots)
    if sum(len(opts) for opts in choices) > 300:
        return _greedy_large(choices, picked, slots, deadline, current)
    while current > deadline + 1e-6:
        best, best_ratio = None, 0.0
        for i, opts in enumerate(choices):
            for o in opts:
                if o.seconds >= picked[i].seconds:
                    continue
                # the makespan first; when no single move shortens it (several lanes end together), the seconds
                # saved on the way there
                gain = (current - schedule([*picked[:i], o, *picked[i + 1:]], slots)) \
                    + 1e-3 * (picked[i].seconds - o.seconds)
                ratio = gain / max(1e-9, o.cost - picked[i].cost)
                if gain > 0 and (best is None or ratio > best_ratio):
                    best, best_ratio = (i, o), ratio
        if best is None:
            break
        picked[best[0]] = best[1]
        current = schedule(picked, slots)
    return picked


def _greedy_large(choices: list[list[Option]], picked: list[Option], slots: int, deadline: float,
                  current: float) -> list[Option]:
    def best_move(i: int) -> tuple[float, int, Option] | None:
        now = picked[i]
        moves = [((now.seconds - o.seconds) / max(1e-9, o.cost - now.cost), o) for o in choices[i]
                 if o.seconds < now.seconds]
        if not moves:
            return None
        ratio, o = max(moves, key=lambda m: m[0])
        return (-ratio, i, o)

    heap = [m for i in range(len(choices)) if (m := best_move(i)) is not None]
    heapq.heapify(heap)
    while current > deadline + 1e-6 and heap:
        _, i, o = heapq.heappop(heap)
        if o.seconds >= picked[i].seconds:
            continue  # stale
        picked[i] = o
        current = schedule(picked, slots)
        if (m := best_move(i)) is not None:
            heapq.heappush(heap, m)
    return picked


def _search(choices: list[list[Option]], slots: int, deadline: float, incumbent: list[Option] | None, *,
            budget: float | None = None) -> tuple[list[Option] | None, bool]:
    """Branch and bound. Without `budget`: the cheapest plan of every job that meets the deadline. With it, a job
    may be left out: the most jobs, then the lowest cost, within the budget and the deadline."""
    n = len(choices)
    skip = budget is not None
    min_cost = [opts[0].cost for opts in choices]
    min_secs = [min(o.seconds for o in opts) for opts in choices]
    rest_cost = [sum(min_cost[i:]) for i in range(n + 1)]
    rest_secs = [sum(min_secs[i:]) for i in range(n + 1)]
    rest_longest = [max(min_secs[i:], default=0.0) for i in range(n + 1)]
    best: list[Option] | None = None
    best_key = (float("inf"), float("inf"))  # (jobs left out, cost)
    if incumbent is not None and schedule(incumbent, slots) <= deadline + 1e-6 \
            and (budget is None or _cost(incumbent) <= budget + EPS):
        best, best_key = list(incumbent), (n - len(incumbent), _cost(incumbent))
    nodes = 0
    limit = min(NODE_LIMIT, max(NODE_FLOOR, NODE_WORK // max(1, n)))
    exact = True
    load: dict[PlanOffer, float] = {}
    picked: list[Option] = []

    def better(key: tuple[float, float]) -> bool:
        return key[0] < best_key[0] or (key[0] == best_key[0] and key[1] < best_key[1] - 1e-12)

    def walk(i: int, out: int, cost: float, secs: float, longest: float, crowd: float) -> None:
        nonlocal best, best_key, nodes, exact
        nodes += 1
        if nodes > limit:
            exact = False
            return
        if not better((out, cost + rest_cost[i])):
            return
        bound = max(longest, crowd, secs / slots) if skip else \
            max(longest, crowd, rest_longest[i], (secs + rest_secs[i]) / slots)
        if bound > deadline + 1e-6:
            return
        if i == n:
            if schedule(picked, slots) <= deadline + 1e-6:
                best, best_key = list(picked), (out, cost)
            return
        for o in choices[i]:
            if budget is not None and cost + o.cost > budget + EPS:
                break  # options are cheapest first
            was = load.get(o.offer, 0.0)
            load[o.offer] = was + o.seconds
            picked.append(o)
            walk(i + 1, out, cost + o.cost, secs + o.seconds, max(longest, o.seconds),
                 max(crowd, load[o.offer] / min(o.offer.capacity, slots)))
            picked.pop()
            load[o.offer] = was
            if not exact:
                return
        if skip:
            walk(i + 1, out + 1, cost, secs, longest, crowd)

    walk(0, 0, 0.0, 0.0, 0.0, 0.0)
    return best, exact


def _solve(choices: list[list[Option]], slots: int, deadline: float | None, budget: float | None = None,
           incumbent: list[Option] | None = None) -> tuple[list[Option] | None, bool]:
    if deadline is None:
        return _cheapest_within(choices, budget), True
    order = sorted(range(len(choices)), key=lambda i: (-max(o.seconds for o in choices[i]),
                                                       -(choices[i][-1].cost - choices[i][0].cost)))
    ordered = [choices[i] for i in order]
    if incumbent is None:
        incumbent = _greedy(ordered, slots, deadline)
        if schedule(incumbent, slots) > deadline + 1e-6:  # the fastest option of every job, if that makes it
            incumbent = [min(opts, key=lambda o: (o.seconds, o.cost)) for opts in ordered]
    return _search(ordered, slots, deadline, incumbent, budget=budget)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def deadline_refusal(choices: list[list[Option]], slots: int, deadline: float) -> tuple[Refusal, list[Option]]:
    """Which part of the deadline fails and what would fix it, judged on every job's fastest option."""
    fastest = [min(opts, key=lambda o: (o.seconds, o.cost)) for opts in choices]
    slow = max(fastest, key=lambda o: o.seconds)
    if slow.seconds > deadline + 1e-6:
        return Refusal(
            "deadline",
            f"job {slow.job!r} alone takes {_hours(slow.seconds)} on its fastest allowed GPU ({slow.offer.gpu_class}),"
            f" past the deadline of {_hours(deadline)}; no budget or concurrency shortens one job",
            f"set deadline_hours to at least {slow.seconds / 3600:.2f}, or allow a faster GPU class for "
            f"{slow.job!r}",
        ), fastest
    span = schedule(fastest, slots)
    fixes = [f"set deadline_hours to at least {span / 3600:.2f}"]
    more = next((s for s in range(slots + 1, len(fastest) + 1) if schedule(fastest, s) <= deadline + 1e-6), None)
    if more is not None:
        fixes.append(f"raise max_concurrent to {more}")
    if schedule(fastest, max(slots, more or 0), stock=False) <= deadline + 1e-6 \
            and (more is None or schedule(fastest, slots, stock=False) <= deadline + 1e-6):
        fixes.append("allow more GPU classes or data centers (stock limits how many of these run at once)")
    return Refusal(
        "deadline",
        f"even on their fastest allowed GPUs the {len(fastest)} jobs take {_hours(span)} at {slots} at once, past "
        f"the deadline of {_hours(deadline)}; no budget helps",
        ", or ".join(fixes),
    ), fastest


def plan(demands: Sequence[JobDemand], offers: Sequence[PlanOffer], timings: Timings, *, budget_usd: float,
         max_concurrent: int, deadline_s: float | None = None, volume_dc: str | None = None,
         volume_gb: float = 0.0, objective: str = "job") -> Plan:
    """The cheapest plan per job (`objective="job"`), or the naive one that takes each job's lowest $/hr offer
    (`objective="hourly"`, for comparison)."""
    slots = max(1, max_concurrent)
    unplaceable: dict[str, str] = {}
    choices: list[list[Option]] = []
    for d in demands:
        opts = options_for(d, offers, timings, volume_dc=volume_dc, volume_gb=volume_gb)
        if not opts:
            unplaceable[d.name] = ("no offer with stock for its GPU classes"
                                   + (" within its budget_usd" if d.budget_usd else ""))
            continue
        if objective == "hourly":
            opts.sort(key=lambda o: (o.offer.price_per_hr, o.cost))
        choices.append(opts)

    def result(picked: Sequence[Option], **extra: object) -> Plan:
        ordered = launch_order(picked)
        return Plan(
            assignments=[Assignment(o.job, o.offer.gpu_class, o.offer.data_center_id, o.offer.price_per_hr,
                                    o.estimate.warm, o.estimate, o.offer.capacity) for o in ordered],
            budget_usd=budget_usd, max_concurrent=slots, deadline_s=deadline_s,
            makespan_s=schedule(ordered, slots) if ordered else 0.0, unplaceable=unplaceable, objective=objective,
            **extra,  # type: ignore[arg-type]
        )

    if unplaceable:
        job, why = next(iter(unplaceable.items()))
        return result([opts[0] for opts in choices], refusal=Refusal(
            "placement", f"job {job!r} cannot be placed ({why})",
            "allow more GPU classes or data centers, raise the job's budget_usd, or retry later"))
    if objective == "hourly" or not choices:
        return result([opts[0] for opts in choices])
    full, exact = _solve(choices, slots, deadline_s)
    if full is None:
        assert deadline_s is not None
        refusal, fastest = deadline_refusal(choices, slots, deadline_s)
        return result(fastest, exact=exact, refusal=refusal)
    total = _cost(full)
    if total <= budget_usd + EPS:
        return result(full, exact=exact)
    # the budget is short: the most jobs that fit (then the cheapest), never all of them on too little money
    left_out = sorted(full, key=lambda o: -o.cost)
    incumbent = list(full)
    while incumbent and _cost(incumbent) > budget_usd + EPS:
        incumbent.remove(left_out.pop(0))
    some, exact_some = _solve(choices, slots, deadline_s, budget_usd, incumbent=incumbent)
    some = some or []
    if not some:
        cheapest = min(full, key=lambda o: o.cost)
        return result(full, exact=exact and exact_some, refusal=Refusal(
            "budget",
            f"not one job can finish within the budget of {usd(budget_usd)}: the cheapest, {cheapest.job!r}, is "
            f"expected to cost {usd(cheapest.cost)} ({cheapest.offer.gpu_class}); all {len(full)} cost {usd(total)}",
            f"raise budget_usd to at least {cheapest.cost:.4f} for one job ({total:.4f} for all)"))
    planned = {o.job for o in some}
    not_started = {o.job: f"the budget leaves it out (expected {usd(o.cost)})" for o in full if o.job not in planned}
    return result(some, exact=exact and exact_some, not_started=not_started, full_usd=total)
