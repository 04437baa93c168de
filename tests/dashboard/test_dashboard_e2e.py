"""The dashboard in a real browser while the demo trains in the sandbox: the Now page follows the training step
without a reload, the job page marks the chosen checkpoint on its loss curve, a screenshot of it is not blank (and
is the README's docs/dashboard-job.png), and `--export` opens from disk with the same content."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import PIPELINE_FAST_ENV, live_pods

from .conftest import cli, pixel_variance, start_cli, wait_js

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = REPO / "docs" / "dashboard-job.png"
# slow enough steps (6 of them) that the 2 s poll sees the step move on two pages; everything else stays fast
SLOW_STEPS = {"standin": {"trainer": {"seconds_per_step": 3.0}}}
STEP = "document.querySelector('.running-job .step') && document.querySelector('.running-job .step').dataset.step"
JOB_STEP = STEP.replace(".running-job .step", "#live-progress .step")


@pytest.fixture(autouse=True)
def fast_pipeline(monkeypatch):
    for name, value in PIPELINE_FAST_ENV.items():
        monkeypatch.setenv(name, value)


def _chosen_step() -> tuple[int, int]:
    """(run id, chosen step) of the last run in the state store."""
    from pistachio_infra.state import Store

    store = Store()
    try:
        job_id = store.jobs()[-1]["id"]
        select = next(r for r in store.stages(job_id) if r.stage == "select")
        return job_id, int(select.result["step"])
    finally:
        store.close()


def _live_text(browser) -> str:  # type: ignore[no-untyped-def]
    return browser.find_element("id", "live").text


def test_dashboard_follows_the_demo_and_exports_the_same_pages(sandbox_factory, dashboard, browser, tmp_path):
    from pistachio_infra.sandbox.control import Admin

    info = sandbox_factory(SLOW_STEPS)
    d = dashboard()
    browser.get(d.url)
    assert "No job has run yet" in _live_text(browser)

    demo = start_cli("demo", "--images", "10", "--epochs", "6")
    try:
        # the open page (never reloaded) shows the job, then its step moving
        first = int(wait_js(browser, STEP, 240, "a training step on the Now page", demo))
        later = int(wait_js(browser, f"({STEP}) && Number({STEP}) > {first} && ({STEP})", 120,
                            "the step to advance on the Now page", demo))
        assert later > first
        row = browser.find_element("css selector", ".running-job").text
        assert "train" in row and "pip" in row
        pods = browser.find_element("id", "pods").text
        assert "a6000" in pods and "$0.49" in pods  # the pod the job rented, with its price
        # the running job's own page follows the step too
        browser.find_element("css selector", ".running-job a").click()
        seen = int(wait_js(browser, JOB_STEP, 60, "the step on the job page", demo))
        wait_js(browser, f"({JOB_STEP}) && Number({JOB_STEP}) > {seen}", 120, "the step to advance on the job page",
                demo)
        assert browser.execute_script("return window.dashboard.polls") > 0
        browser.find_element("link text", "Now").click()
        out, _ = demo.communicate(timeout=240)
        assert demo.returncode == 0, out
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate(timeout=30)
    assert live_pods(Admin(info)) == []
    job_id, chosen = _chosen_step()

    # the Now page notices the end on its own, and links to the job
    wait_js(browser, "!document.querySelector('.running-job') && document.querySelector('.job-row')", 60,
            "the Now page to show the run as finished")
    # clicked in the page itself: the Now page re-renders as it polls, so a found element can go stale before a click
    browser.execute_script(f"document.querySelector(\".job-row[data-job-id='{job_id}'] a\").click()")
    wait_js(browser, "document.querySelector('.chosen-marker')", 60, "the chosen checkpoint on the loss curve")
    _assert_chosen_marked(browser, chosen)
    server_text = _live_text(browser)
    assert f"Chosen: step {chosen}" in server_text and "Installed LoRA:" in server_text
    assert "10 images · 8 train / 2 eval" in server_text
    assert "rendered on a rented ComfyUI pod" in server_text  # the demo's samples (it has no ComfyUI of its own)
    _assert_images_loaded(browser, 10)

    # the screenshot of the job page is not blank, and neither is the chart in it
    browser.execute_script("window.scrollTo(0, 0)")
    png = browser.get_screenshot_as_png()
    assert pixel_variance(png) > 200
    chart = browser.find_element("id", "loss-chart").screenshot_as_png
    assert pixel_variance(chart) > 50
    if not DOCS_SCREENSHOT.exists() or os.environ.get("PISTACHIO_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(png)

    character_url = browser.find_element("css selector", "nav a.character").get_attribute("href")
    browser.get(character_url)
    wait_js(browser, "window.dashboard.charts['character-chart']", 30, "the overlaid eval curves")
    character_text = _live_text(browser)
    money_url = browser.find_element("link text", "Money").get_attribute("href")
    browser.get(money_url)
    wait_js(browser, "window.dashboard.charts['money-chart']", 30, "the spend chart")
    assert "a6000" in browser.find_element("id", "per-class").text

    # --export: the same pages from disk, no server, no token
    export = tmp_path / "export"
    done = cli("dashboard", "--export", str(export))
    assert done.returncode == 0, done.stderr
    pages = "".join(p.read_text() for p in export.glob("*.html"))
    assert "?token=" not in pages and d.token not in pages and "http://127.0.0.1" not in pages
    browser.get((export / "index.html").as_uri())
    browser.find_element("css selector", f".job-row[data-job-id='{job_id}'] a").click()
    assert browser.current_url == (export / f"job-{job_id}.html").as_uri()
    wait_js(browser, "document.querySelector('.chosen-marker')", 30, "the chosen checkpoint in the export")
    _assert_chosen_marked(browser, chosen)
    assert _live_text(browser) == server_text
    _assert_images_loaded(browser, 10)
    browser.get((export / "character-pip.html").as_uri())
    assert _live_text(browser) == character_text
    shutil.rmtree(export)


def _assert_chosen_marked(browser, step: int) -> None:  # type: ignore[no-untyped-def]
    """The marker sits on the plotted chosen point: the eval loss of that step, inside the plot area."""
    marker = browser.find_element("css selector", "#loss-chart .chosen-marker")
    assert marker.get_attribute("data-step") == str(step)
    found = browser.execute_script("""
        const u = window.dashboard.charts['loss-chart'], s = arguments[0];
        const i = u.data[0].indexOf(s), m = document.querySelector('#loss-chart .chosen-marker');
        const over = u.over.getBoundingClientRect(), r = m.getBoundingClientRect();
        return {eval: u.data[2][i], chosen: u.data[5][i], others: u.data[5].filter(v => v !== null).length,
                x: r.left - over.left, y: r.top - over.top, w: over.width, h: over.height,
                px: u.valToPos(s, 'x'), py: u.valToPos(u.data[2][i], 'y')};""", step)
    assert found["chosen"] is not None and found["chosen"] == found["eval"] and found["others"] == 1
    assert 0 <= found["x"] <= found["w"] and 0 <= found["y"] <= found["h"]
    assert abs(found["x"] - found["px"]) < 2 and abs(found["y"] - found["py"]) < 2
    row = browser.find_element("css selector", "table.checkpoints tr.chosen").text
    assert row.startswith(f"{step} ") and "← chosen" in row


def _assert_images_loaded(browser, count: int) -> None:  # type: ignore[no-untyped-def]
    loaded = wait_js(browser, "Array.from(document.querySelectorAll('figure.image img')).every("
                     "i => i.complete) && document.querySelectorAll('figure.image img').length", 30,
                     "the contact sheet's images")
    assert loaded == count
    broken = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure.image img')).filter(i => !i.naturalWidth).length")
    assert broken == 0
