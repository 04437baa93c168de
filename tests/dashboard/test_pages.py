"""The dashboard's pages over a state written through the store's own API (real SQLite, no sandbox): a campaign
with a budget and an allowance, a live pod with its watchdog deadline, a running job with its progress file, and
a finished one; checked through the server (token) and in the browser (Money chart with the budget line)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

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
    return {"done": done, "running": running}


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
