"""The cost model: parts add up, bands hold, warm is cheaper, and our own finished runs refine seconds/step."""

from __future__ import annotations

import pytest

from pistachio_infra.campaign.costmodel import JobDemand, estimate, load_timings, observations, refine, timings_for


def _demand(**kw) -> JobDemand:  # type: ignore[no-untyped-def]
    base = dict(name="j", steps=400, images=24, to_caption=24, upload_bytes=48 * 10**6, pixel_factor=1.0,
                classes=("a40", "h100"))
    return JobDemand(**{**base, **kw})


def test_estimate_adds_its_parts_and_prices_them_per_second():
    t = load_timings("runpod")
    e = estimate(_demand(), "a40", 0.40, t)
    assert e.seconds[0] < e.seconds[1] < e.seconds[2]
    assert e.usd[0] < e.usd[1] < e.usd[2]
    assert e.expected_s == pytest.approx(sum(e.parts.values()), abs=1)
    assert e.expected_usd == pytest.approx(e.expected_s * 0.40 / 3600)
    assert e.parts["train"] == pytest.approx(t.train_fixed_s[1] + 400 * t.s_per_step["a40"][1])
    # steps at 768 px cost (768/512)^2 as much; captioned datasets skip captioning
    big = estimate(_demand(pixel_factor=2.25), "a40", 0.40, t)
    assert big.parts["train"] - t.train_fixed_s[1] == pytest.approx(2.25 * (e.parts["train"] - t.train_fixed_s[1]))
    assert estimate(_demand(to_caption=0), "a40", 0.40, t).parts["caption"] == 0


def test_warm_cache_is_faster_and_carries_the_volume_share():
    t = load_timings("runpod")
    cold = estimate(_demand(), "a40", 0.40, t)
    warm = estimate(_demand(), "a40", 0.40, t, warm=True, volume_gb=200)
    assert warm.parts["bootstrap"] < cold.parts["bootstrap"] and warm.expected_usd < cold.expected_usd
    share = warm.expected_s * 200 * t.volume_usd_per_gb_month / (30 * 86400)
    assert warm.volume_usd == pytest.approx(share)
    assert warm.expected_usd == pytest.approx(warm.expected_s * 0.40 / 3600 + share)


def test_finished_runs_in_the_state_store_refine_seconds_per_step(tmp_path):
    from pistachio_infra.state import Store

    store = Store(tmp_path / "state.db")
    prior = load_timings("sandbox")
    for seconds in (30.0, 34.0, 32.0):  # three finished a40 runs of 100 steps: ~0.32 s/step, far above the table
        job = store.create_job("j", cloud="sandbox", spec={})
        store.stage_started(job, "provision")
        store.stage_done(job, "provision", {"gpu_class": "a40"})
        store.stage_started(job, "train")
        store.stage_done(job, "train", {"steps": 100})
        store._db.execute("UPDATE stages SET started_at = finished_at - ? WHERE job_id = ? AND stage = 'train'",
                          (seconds, job))
        store.finish_job(job, "done")
    failed = store.create_job("j", cloud="sandbox", spec={})  # unfinished runs and other clouds do not count
    store.finish_job(failed, "failed")
    obs = observations(store, "sandbox")
    assert sorted(round(o.seconds_per_step, 2) for o in obs) == [0.30, 0.32, 0.34]
    assert observations(store, "runpod") == []
    refined = refine(prior, obs)
    low, mid, high = refined.s_per_step["a40"]
    assert prior.s_per_step["a40"][1] < mid < 0.32 and low <= 0.30 and high >= 0.34
    assert refined.s_per_step["h100"] == prior.s_per_step["h100"]  # no runs: unchanged
    assert refined.observed_runs == {"a40": 3}
    assert timings_for("sandbox", store).s_per_step["a40"] == refined.s_per_step["a40"]
    store.close()
