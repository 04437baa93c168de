"""The planner against brute force on small generated scenarios, and cost per job against cheapest $/hr."""

from __future__ import annotations

import itertools
import random

import pytest

from pistachio_infra.campaign.costmodel import JobDemand, load_timings
from pistachio_infra.campaign.planner import PlanOffer, options_for, plan

CLASSES = ("a6000", "a40", "4090", "a100", "h100")
DCS = ("US-TX-3", "EU-RO-1", "CA-MTL-1")


def _scenario(rng: random.Random) -> dict:
    n_jobs = rng.randint(2, 5)
    demands = [
        JobDemand(name=f"j{i}", steps=rng.choice([60, 150, 300, 600]), images=rng.randint(8, 40),
                  to_caption=rng.randint(0, 20), upload_bytes=rng.randint(1, 80) * 10**6, pixel_factor=1.0,
                  classes=tuple(rng.sample(CLASSES, rng.randint(2, len(CLASSES)))),
                  budget_usd=rng.choice([None, None, None, rng.uniform(4, 15)]))
        for i in range(n_jobs)
    ]
    offers = []
    for cls in rng.sample(CLASSES, rng.randint(2, len(CLASSES))):
        price = round(rng.uniform(0.3, 5.0), 2)
        for dc in rng.sample(DCS, rng.randint(1, 2)):
            offers.append(PlanOffer(cls, dc, price, rng.choice([1, 3, 7])))
    volume_dc = rng.choice([None, *DCS])
    deadline = rng.choice([None, rng.uniform(1.5, 8.0) * 3600])
    return {"demands": demands, "offers": offers, "volume_dc": volume_dc, "deadline": deadline,
            "slots": rng.randint(1, 3)}


def _simulate(durations: list[tuple[float, str, tuple]], slots: int, caps: dict) -> float:
    """An independent model of the executor: jobs longest first; at every moment start, in that order, each waiting
    job for which a slot is free and its offer runs fewer jobs than its stock capacity; else wait for an end."""
    waiting = sorted(durations, key=lambda d: (-d[0], d[1]))
    running: list[tuple[float, tuple]] = []
    now, end = 0.0, 0.0
    while waiting:
        for d in list(waiting):
            busy = sum(1 for _, offer in running if offer == d[2])
            if len(running) < slots and busy < caps[d[2]]:
                running.append((now + d[0], d[2]))
                end = max(end, now + d[0])
                waiting.remove(d)
        if waiting:
            now = min(t for t, _ in running)
            running = [(t, offer) for t, offer in running if t > now]
    return end


def _brute_force(sc: dict, timings, budget: float) -> tuple[str, int, float]:
    """("refused", 0, 0) when no plan exists; else (kind, jobs planned, cost): the cheapest plan of every job that
    meets the deadline ("fits" within the budget), or, when that is over budget, the most jobs and then the lowest
    cost within the budget and the deadline ("partial"). Every assignment (and every left-out set) is tried."""
    per_job = [options_for(d, sc["offers"], timings, volume_dc=sc["volume_dc"], volume_gb=200)
               for d in sc["demands"]]
    if any(not opts for opts in per_job):
        return ("refused", 0, 0.0)
    caps = {(o.gpu_class, o.data_center_id): o.capacity for o in sc["offers"]}

    def on_time(combo) -> bool:
        durations = [(o.seconds, o.job, (o.offer.gpu_class, o.offer.data_center_id)) for o in combo]
        return sc["deadline"] is None or _simulate(durations, sc["slots"], caps) <= sc["deadline"] + 1e-6

    full = [sum(o.cost for o in combo) for combo in itertools.product(*per_job) if on_time(combo)]
    if not full:
        return ("refused", 0, 0.0)
    if min(full) <= budget + 1e-9:
        return ("fits", len(per_job), min(full))
    best: tuple[int, float] | None = None
    for combo in itertools.product(*[[*opts, None] for opts in per_job]):
        chosen = [o for o in combo if o is not None]
        cost = sum(o.cost for o in chosen)
        if not chosen or cost > budget + 1e-9 or not on_time(chosen):
            continue
        key = (-len(chosen), cost)
        best = key if best is None or key < best else best
    return ("refused", 0, 0.0) if best is None else ("partial", -best[0], best[1])


def _small(sc: dict) -> bool:
    size = 1
    for d in sc["demands"]:
        size *= 1 + sum(1 for o in sc["offers"] if o.gpu_class in d.classes)
    return size <= 40_000


SEEDS = range(200)


@pytest.mark.parametrize("seed", SEEDS)
def test_planner_equals_brute_force(seed):
    """Equal cost to the optimum wherever a plan exists; a refusal exactly where none does; a short budget keeps
    the most jobs (then the cheapest) instead of refusing. Budgets range from all-fit to not-one-fits."""
    rng = random.Random(seed)
    timings = load_timings("runpod")
    sc = _scenario(rng)
    while not _small(sc):
        sc = _scenario(rng)
    roomy = plan(sc["demands"], sc["offers"], timings, budget_usd=1e6, max_concurrent=sc["slots"],
                 deadline_s=sc["deadline"], volume_dc=sc["volume_dc"], volume_gb=200)
    full = roomy.usd[1] if roomy.refusal is None else 10.0
    budget = rng.choice([1e6, full, full * rng.uniform(0.2, 0.99), full * 0.05])
    kind, jobs, cost = _brute_force(sc, timings, budget)
    p = plan(sc["demands"], sc["offers"], timings, budget_usd=budget, max_concurrent=sc["slots"],
             deadline_s=sc["deadline"], volume_dc=sc["volume_dc"], volume_gb=200)
    assert p.exact
    if kind == "refused":
        assert p.refusal is not None and not p.runnable, "brute force finds no plan, the planner claims one"
        return
    assert p.refusal is None and p.runnable and p.meets_deadline and not p.unplaceable
    assert len(p.assignments) == jobs
    assert p.usd[1] == pytest.approx(cost, rel=1e-9, abs=1e-12)
    assert (not p.not_started) == (kind == "fits")
    assert len(p.assignments) + len(p.not_started) == len(sc["demands"])


def test_brute_force_covers_every_outcome():
    """The generated scenarios reach all three outcomes, and enough of each to mean something."""
    timings = load_timings("runpod")
    kinds: dict[str, int] = {}
    for seed in SEEDS:
        rng = random.Random(seed)
        sc = _scenario(rng)
        while not _small(sc):
            sc = _scenario(rng)
        roomy = plan(sc["demands"], sc["offers"], timings, budget_usd=1e6, max_concurrent=sc["slots"],
                     deadline_s=sc["deadline"], volume_dc=sc["volume_dc"], volume_gb=200)
        full = roomy.usd[1] if roomy.refusal is None else 10.0
        budget = rng.choice([1e6, full, full * rng.uniform(0.2, 0.99), full * 0.05])
        kind = _brute_force(sc, timings, budget)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    print(kinds)
    assert kinds.get("fits", 0) >= 20 and kinds.get("partial", 0) >= 10 and kinds.get("refused", 0) >= 5, kinds


def test_cost_per_job_beats_cheapest_per_hour_when_the_fast_gpu_is_cheaper_per_job():
    timings = load_timings("runpod")
    demands = [JobDemand(name=f"c{i}", steps=800, images=24, to_caption=0, upload_bytes=20 * 10**6,
                         pixel_factor=1.0, classes=("4090", "h100")) for i in range(3)]
    offers = [PlanOffer("4090", "US-TX-3", 0.44, 7), PlanOffer("h100", "US-TX-3", 2.69, 7)]
    smart = plan(demands, offers, timings, budget_usd=100, max_concurrent=2)
    naive = plan(demands, offers, timings, budget_usd=100, max_concurrent=2, objective="hourly")
    assert {a.gpu_class for a in naive.assignments} == {"4090"}  # the lowest $/hr
    assert {a.gpu_class for a in smart.assignments} == {"h100"}  # 60 s vs 7.5 s per step: cheaper per job
    assert smart.usd[1] < naive.usd[1]
    assert smart.makespan_s < naive.makespan_s


def test_warm_cache_groups_jobs_in_the_volume_data_center_when_cheaper():
    timings = load_timings("runpod")
    demands = [JobDemand(name=f"w{i}", steps=200, images=20, to_caption=0, upload_bytes=10**7, pixel_factor=1.0,
                         classes=("a6000", "a40")) for i in range(3)]
    # a40 is a little cheaper per hour, but only outside the volume's data center: a cold bootstrap costs more
    offers = [PlanOffer("a40", "EU-RO-1", 0.40, 7), PlanOffer("a6000", "US-TX-3", 0.49, 7)]
    p = plan(demands, offers, timings, budget_usd=100, max_concurrent=3, volume_dc="US-TX-3", volume_gb=150)
    assert {(a.gpu_class, a.data_center_id, a.warm) for a in p.assignments} == {("a6000", "US-TX-3", True)}
    cold = plan(demands, offers, timings, budget_usd=100, max_concurrent=3)
    assert {a.gpu_class for a in cold.assignments} == {"a40"}  # no volume: the cheaper hour wins


def test_stock_limits_jobs_at_once_not_jobs_in_all_and_the_deadline_buys_speed():
    timings = load_timings("runpod")
    demands = [JobDemand(name=f"s{i}", steps=300, images=20, to_caption=0, upload_bytes=10**7, pixel_factor=1.0,
                         classes=("a40", "h100")) for i in range(3)]
    offers = [PlanOffer("a40", "US-TX-3", 0.40, 1), PlanOffer("h100", "US-TX-3", 4.76, 7)]
    p = plan(demands, offers, timings, budget_usd=100, max_concurrent=3)
    # one a40 in stock: the three jobs take turns on it (stock delays them, it does not forbid them)
    assert [a.gpu_class for a in p.assignments] == ["a40"] * 3 and p.fits
    one = p.assignments[0].estimate.expected_s
    assert p.makespan_s == pytest.approx(3 * one)
    # a deadline the turns miss buys h100s for some of them, the cheapest way to meet it
    tight = plan(demands, offers, timings, budget_usd=100, max_concurrent=3, deadline_s=1.5 * one)
    assert tight.meets_deadline and tight.fits
    assert sorted(a.gpu_class for a in tight.assignments) == ["a40", "h100", "h100"]


def test_hundreds_of_jobs_at_low_concurrency_are_planned_not_refused_for_stock():
    """Issue 21.6: 200 jobs at concurrency 4 over 6 classes x 4 data centers, with and without a deadline."""
    timings = load_timings("runpod")
    classes = ("a6000", "a40", "l40s", "4090", "a100", "h100")
    demands = [JobDemand(name=f"m{i}", steps=100 + 40 * (i % 9), images=20, to_caption=0, upload_bytes=10**7,
                         pixel_factor=1.0, classes=classes) for i in range(200)]
    offers = [PlanOffer(c, dc, 0.3 + 0.4 * k, (1, 3, 7, 3)[j])
              for k, c in enumerate(classes) for j, dc in enumerate((*DCS, "EU-SE-1"))]
    p = plan(demands, offers, timings, budget_usd=10_000, max_concurrent=4)
    assert p.fits and p.exact and len(p.assignments) == 200 and p.usd[1] > 0
    week = plan(demands, offers, timings, budget_usd=10_000, max_concurrent=4, deadline_s=7 * 86400)
    assert week.fits and len(week.assignments) == 200


def test_a_missed_deadline_names_the_deadline_and_its_fixes_not_the_budget():
    timings = load_timings("runpod")
    demands = [JobDemand(name=f"d{i}", steps=300, images=20, to_caption=0, upload_bytes=10**7, pixel_factor=1.0,
                         classes=("a40",)) for i in range(4)]
    offers = [PlanOffer("a40", "US-TX-3", 0.40, 7)]
    one = plan(demands[:1], offers, timings, budget_usd=100, max_concurrent=1).makespan_s
    p = plan(demands, offers, timings, budget_usd=100, max_concurrent=1, deadline_s=2.5 * one)
    assert p.refusal is not None and p.refusal.constraint == "deadline" and not p.runnable
    assert "raise max_concurrent to 2" in p.refusal.fix and "deadline_hours" in p.refusal.fix
    assert "budget" not in p.refusal.fix
    # stock is what binds: one a40 at a time, concurrency would not help, more classes or data centers would
    scarce = plan(demands, [PlanOffer("a40", "US-TX-3", 0.40, 1)], timings, budget_usd=100, max_concurrent=4,
                  deadline_s=2.5 * one)
    assert scarce.refusal is not None and "more GPU classes or data centers" in scarce.refusal.fix
    assert "max_concurrent" not in scarce.refusal.fix
    # one job alone longer than the deadline: only a later deadline or a faster class helps
    alone = plan(demands, offers, timings, budget_usd=100, max_concurrent=4, deadline_s=0.5 * one)
    assert alone.refusal is not None and "alone takes" in alone.refusal.cause
    assert "max_concurrent" not in alone.refusal.fix


def test_a_short_budget_keeps_the_jobs_it_can_finish_and_refuses_only_when_none_fits():
    timings = load_timings("runpod")
    demands = [JobDemand(name=f"b{i}", steps=300 + 100 * i, images=20, to_caption=0, upload_bytes=10**7,
                         pixel_factor=1.0, classes=("a40",)) for i in range(3)]
    offers = [PlanOffer("a40", "US-TX-3", 0.40, 7)]
    full = plan(demands, offers, timings, budget_usd=1000, max_concurrent=2)
    cost = {a.job: a.estimate.expected_usd for a in full.assignments}
    p = plan(demands, offers, timings, budget_usd=cost["b0"] + cost["b1"] + 1e-6, max_concurrent=2)
    assert p.runnable and not p.fits
    assert sorted(a.job for a in p.assignments) == ["b0", "b1"] and list(p.not_started) == ["b2"]
    assert p.full_usd == pytest.approx(full.usd[1])
    none = plan(demands, offers, timings, budget_usd=cost["b0"] * 0.9, max_concurrent=2)
    assert none.refusal is not None and none.refusal.constraint == "budget" and not none.runnable
    assert "not one job" in none.refusal.cause and f"{cost['b0']:.4f}" in none.refusal.fix
