"""The dashboard's pages over a state written through the store's own API (real SQLite, no sandbox): a campaign
with a budget and an allowance, a live pod with its watchdog deadline, a running job with its progress file, and
a finished one, and two reruns of one job with real TensorBoard mirrors; checked through the server (token) and in
the browser (Money chart with the budget line, the character overlay, the chosen checkpoint of each rerun)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from selection.selection_runs import exp_plateau, u_curve, write_run

from .conftest import wait_js


@pytest.fixture
def state_with_a_campaign(tmp_path, monkeypatch):
    from pistachio_infra.campaign.records import CampaignRecords
    from pistachio_infra.state import Store

    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    now = time.time()
    store, records = Store(), CampaignRecords()
    plan = [{"job": j, "gpu": "a40", "dc": "EU-SE-1", "warm": False, "price": 0.4, "usd_low": 0.1, "usd": 0.2,
             "usd_high": 0.3, "seconds": 600} for j in ("alice", "bob")]
    records.save_plan("spring", "sandbox", fingerprint="f", source="pistachio.toml", budget_usd=5.0, plan=plan)
    records.set_status("spring", "sandbox", "running")
    records.update_job("spring", "sandbox", "alice", status="running", allowance_usd=1.25)
    records.update_job("spring", "sandbox", "bob", status="done")

    done = store.create_job("bob", cloud="sandbox", campaign="spring", spec={"job": {"character": "Bob"}})
    store.stage_started(done, "provision")
    store.stage_done(done, "provision", {"gpu_class": "a40", "data_center": "EU-SE-1", "cost_per_hr": 0.4})
    store.record_pod_intent("pod-bob", cloud="sandbox", job_id=done, gpu_class="a40")
    store.update_pod("pod-bob", pod_id="bob123", cost_per_hr=0.4, status="ready")
    store.mark_pod_gone("pod-bob", "teardown")
    store.record_billing("bob123", billed_usd=0.31, billed_seconds=2700, job_id=done, campaign="spring")
    store.finish_job(done, "done")

    reruns = [done, _finished_run(store, tmp_path, u_curve), _finished_run(store, tmp_path, exp_plateau)]

    running = store.create_job("alice", cloud="sandbox", campaign="spring", spec={"job": {"character": "Alice"}})
    store.stage_started(running, "provision")
    store.stage_done(running, "provision", {"gpu_class": "a40"})
    store.stage_started(running, "train")
    store.record_pod_intent("pod-alice", cloud="sandbox", job_id=running, gpu_class="a40",
                            data_center_id="EU-SE-1")
    store.update_pod("pod-alice", pod_id="alice456", cost_per_hr=0.4, status="ready",
                     watchdog_deadline=now + 3 * 3600)
    work = tmp_path / "work" / f"alice-{running}"
    work.mkdir(parents=True)
    (work / "progress.json").write_text(json.dumps(
        {"step": 120, "total": 400, "epoch": 3, "loss": 0.0812, "eval_loss": 0.0931, "seconds_per_step": 1.5}))
    store.close()
    records.close()
    return {"done": done, "running": running, "reruns": reruns[1:]}


def _finished_run(store, home, curve) -> int:  # type: ignore[no-untyped-def]
    """A finished run of `bob` whose TensorBoard mirror (real event files) and selection are recorded the way the
    pipeline records them."""
    from pistachio_infra.selection.choose import select_checkpoint

    job_id = store.create_job("bob", cloud="sandbox", spec={"job": {"character": "Bob", "epochs": job_epochs(curve)}})
    run_dir = write_run(home / "work" / f"bob-{job_id}" / "run" / "20260101_00-00-00", curve, eval_name="eval")
    saved = sorted(p.name for p in run_dir.glob("step*"))
    sel = select_checkpoint(run_dir, eval_name="eval", saved_folders=saved)
    for stage, result in (("train", {"run": run_dir.name, "steps": 200, "saved": saved}),
                          ("select", {"step": sel.step, "checkpoint": sel.checkpoint_name, "verdict": sel.verdict,
                                      "eval_loss": sel.eval_loss, "message": sel.message, "warnings": []})):
        store.stage_started(job_id, stage)
        store.stage_done(job_id, stage, result)
    store.finish_job(job_id, "done")
    return job_id


def job_epochs(curve) -> int:  # type: ignore[no-untyped-def]
    return 10 if curve is u_curve else 20


def test_now_and_money_show_pods_jobs_campaigns_and_cost_per_lora(state_with_a_campaign, dashboard, browser):
    d = dashboard()
    now = httpx.get(f"{d.base}/api/now", params={"token": d.token}, timeout=30).json()
    [pod] = now["data"]["pods"]
    assert (pod["gpu_class"], pod["data_center"], pod["cost_per_hr"], pod["job"]) == ("a40", "EU-SE-1", 0.4, "alice")
    assert 2.9 * 3600 < pod["watchdog_left_s"] <= 3 * 3600
    [job] = now["data"]["running"]
    assert (job["stage"], job["step"], job["total"]) == ("train", 120, 400)
    assert job["eta_s"] == pytest.approx(280 * 1.5) and job["limit"] == {"usd": 1.25, "kind": "allowance"}
    [campaign] = now["data"]["campaigns"]
    assert campaign["budget_usd"] == 5.0 and campaign["counts"] == {"running": 1, "done": 1}

    browser.get(d.url)
    text = browser.find_element("id", "live").text
    assert "120/400" in text and "of $1.25 allowance" in text and "7m00s" in text  # ETA 280 steps × 1.5 s
    assert "spring" in text and "of $5.00" in text and "alice456" in text

    browser.get(d.page("/money"))
    per_class = browser.find_element("id", "per-class").text
    assert "a40 1 $0.3100" in per_class  # one finished LoRA, billed what the ledger says
    labels = wait_js(browser, "window.dashboard.charts['money-chart'] && "
                              "window.dashboard.charts['money-chart'].series.map(s => s.label)", 30, "the chart")
    assert labels[1:] == ["spring spent", "spring budget"]
    budget = browser.execute_script("return window.dashboard.charts['money-chart'].data[2]")
    assert set(budget) == {5.0}

    job_page = httpx.get(f"{d.base}/job/{state_with_a_campaign['running']}", params={"token": d.token}, timeout=30)
    assert job_page.status_code == 200 and "step 120/400" in job_page.text and "data-poll=" in job_page.text
    finished = httpx.get(f"{d.base}/job/{state_with_a_campaign['done']}", params={"token": d.token}, timeout=30)
    assert finished.status_code == 200 and "data-poll=" not in finished.text  # a finished run does not poll


def test_character_overlays_every_run_and_each_job_marks_its_choice(state_with_a_campaign, dashboard, browser):
    from pistachio_infra.state import Store

    d = dashboard()
    first, second = state_with_a_campaign["reruns"]
    store = Store()
    chosen = {i: next(r for r in store.stages(i) if r.stage == "select").result["step"] for i in (first, second)}
    store.close()
    assert chosen[first] != chosen[second]  # the two curves bottom out at different steps
    browser.get(d.page("/character/bob"))
    labels = wait_js(browser, "window.dashboard.charts['character-chart'] && "
                              "window.dashboard.charts['character-chart'].series.map(s => s.label)", 30, "the chart")
    assert len(labels) == 3  # x + one series per run with a curve (the run without event files has none)
    assert labels[1].startswith(f"run {first} ") and labels[1].endswith(f"step {chosen[first]}")
    assert labels[2].startswith(f"run {second} ") and labels[2].endswith(f"step {chosen[second]}")
    rows = browser.find_elements("css selector", "tr.run-row")
    assert len(rows) == 3 and "epochs=20" in rows[2].text
    for job_id in (first, second):
        rows = browser.find_elements("css selector", f"tr.run-row[data-job-id='{job_id}'] a")
        rows[0].click()
        marker = wait_js(browser, "document.querySelector('#loss-chart .chosen-marker')", 30, "the marker")
        assert marker.get_attribute("data-step") == str(chosen[job_id])
        saved = browser.execute_script("return window.dashboard.charts['loss-chart'].data[4].filter(v => v !== null)")
        assert len(saved) == 20  # every saved checkpoint is on the curve (write_run saves every 10 of 200 steps)
        browser.back()
