"""Issue 19, through the CLI against the sandbox: nothing lost, nothing misleading (data, money and messages)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from helpers import live_pods, wait_until

from .conftest import cli, kill, start_cli, write_project

pytestmark = pytest.mark.slow


def _jobs() -> list[dict]:
    from pistachio_infra.state import Store

    store = Store()
    try:
        return store.jobs()
    finally:
        store.close()


def test_two_projects_with_the_same_job_name_do_not_clobber_each_other(sandbox, sandbox_admin, tmp_path):
    a = write_project(tmp_path / "a")
    b = write_project(tmp_path / "b")
    first = start_cli("train", "pip", "--project", str(a), env={"PISTACHIO_PAUSE_AT": "upload:60"})
    wait_until(lambda: any(j["status"] == "running" for j in _jobs()) and live_pods(sandbox_admin), 120,
               "project a's pod", first)
    wait_until(lambda: sqlite_stage("upload"), 120, "project a's upload", first)
    kill(first)
    [a_pod] = live_pods(sandbox_admin)
    second = start_cli("train", "pip", "--project", str(b), env={"PISTACHIO_PAUSE_AT": "provision:60"})
    try:
        wait_until(lambda: len(_jobs()) == 2 and sqlite_stage("provision", job=-1), 120, "project b's provision",
                   second)
    finally:
        out = kill(second)
    assert "starting over" not in out and "abandoned" not in out, out
    assert a_pod["id"] in {p["id"] for p in live_pods(sandbox_admin)}  # a's pod was not terminated by b
    first_job, second_job = _jobs()
    assert first_job["status"] == "running" and first_job["project"] == str((tmp_path / "a").resolve())
    assert second_job["project"] == str((tmp_path / "b").resolve())
    again = cli("train", "pip", "--project", str(a), env={"PISTACHIO_PAUSE_AT": ""})
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming run {first_job['id']}" in again.stdout


def sqlite_stage(stage: str, job: int = 0) -> bool:
    from pistachio_infra.state import Store

    store = Store()
    try:
        jobs = store.jobs()
        return bool(jobs) and any(r.stage == stage for r in store.stages(jobs[job]["id"]))
    finally:
        store.close()


def test_old_state_without_projects_is_migrated(tmp_path):
    from pistachio_infra.state import Store

    db = sqlite3.connect(tmp_path / "old.db")
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, cloud TEXT NOT NULL,"
               " campaign TEXT, spec_json TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,"
               " finished_at REAL, result_json TEXT)")
    folder = tmp_path / "proj" / "runs" / "pip" / "20260101_00-00-00"
    db.execute("INSERT INTO jobs (name, cloud, spec_json, status, created_at) VALUES ('pip', 'sandbox', ?,"
               " 'running', 0)", (json.dumps({"run_folder": str(folder)}),))
    db.commit()
    db.close()
    store = Store(tmp_path / "old.db")
    try:
        job = store.latest_job("pip", cloud="sandbox", project=str(tmp_path / "proj"))
        assert job is not None and job["project"] == str(tmp_path / "proj")
        assert store.latest_job("pip", cloud="sandbox", project=str(tmp_path / "other")) is None
    finally:
        store.close()


def test_captions_without_the_trigger_are_refused_naming_them(sandbox, sandbox_admin, tmp_path):
    project = write_project(tmp_path / "proj")
    images = sorted((tmp_path / "proj" / "images").glob("*.png"))
    for image in images:
        image.with_suffix(".txt").write_text("a small green cartoon character waving")
    (images[0].with_suffix(".txt")).write_text("pip7, a small green cartoon character")  # this one is fine
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "do not contain the trigger 'pip7'" in line and "--recaption" in line
    assert all(image.with_suffix(".txt").name in line for image in images[1:])
    assert images[0].with_suffix(".txt").name not in line
    assert sandbox_admin.pods() == []


@pytest.mark.parametrize("link", ["image", "caption"])
def test_links_out_of_the_dataset_folder_are_refused(sandbox, sandbox_admin, tmp_path, link):
    project = write_project(tmp_path / "proj")
    images = tmp_path / "proj" / "images"
    outside = tmp_path / "private"
    outside.mkdir()
    if link == "image":
        (images / "pip_00.png").rename(outside / "secret.png")
        (images / "pip_00.png").symlink_to(outside / "secret.png")
    else:
        (outside / "secret.txt").write_text("pip7, the contents of a private file")
        (images / "pip_00.txt").symlink_to(outside / "secret.txt")
    (images / "inside.png").symlink_to(images / "pip_01.png")  # a link that stays inside is fine
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    name = "pip_00.png" if link == "image" else "pip_00.txt"
    assert f"{name} is a link to {outside.resolve()}" in line and "outside the dataset folder" in line
    assert "inside.png is a link" not in line
    assert sandbox_admin.pods() == []


def test_a_budget_that_cannot_pay_for_one_checkpoint_is_refused_before_any_pod(sandbox, sandbox_admin, tmp_path):
    from pistachio_infra.config.project import load_project
    from pistachio_infra.endpoints import resolve_cloud
    from pistachio_infra.pipeline.driver import minimum_usd

    project = write_project(tmp_path / "proj", budget_usd=0.0001)
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "budget_usd $0.0001 cannot pay for one checkpoint" in line and "set budget_usd to $" in line
    enough = float(line.split("set budget_usd to $")[1].split()[0])
    least = minimum_usd(load_project(project).job("pip"), ("a6000", "a40"), resolve_cloud(), 6)
    assert least is not None and 0.0001 < least <= enough
    assert sandbox_admin.pods() == []


def test_a_pod_that_will_not_terminate_is_named_its_lora_installed_and_billing_taken_from_the_cloud(
        sandbox, sandbox_admin, tmp_path):
    from pistachio_infra.state import Store

    project = write_project(tmp_path / "proj")
    sandbox_admin.inject("server_error", count=None, status=503, method="DELETE")  # every terminate fails
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode != 0, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    [pod] = live_pods(sandbox_admin)
    name = Store().pods(cloud="sandbox")[0].name
    assert f"{name} ({pod['id']}) could not be terminated and may still be billing" in line, line
    assert f"pistachio-infra down {name}" in line and "the LoRA is installed" in line
    loras = list((tmp_path / "proj" / "ComfyUI" / "models" / "loras").glob("Pip_pip7_step*.safetensors"))
    assert len(loras) == 1  # harvested before teardown: installed, not lost

    sandbox_admin.clear_faults()
    assert cli("down", name).returncode == 0
    assert live_pods(sandbox_admin) == []
    again = cli("train", "pip", "--project", str(project))  # finishes the report, rents nothing
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(sandbox_admin.pods()) == 1
    billed = sandbox_admin.billing()[pod["id"]]
    [entry] = [e for e in Store().ledger() if e["pod_id"] == pod["id"]]
    assert entry["billed_usd"] == pytest.approx(billed, rel=0.01)  # the cloud's figure, not our own count


def test_train_bootstraps_exactly_from_the_projects_lock_and_refuses_drift(sandbox, sandbox_admin, tmp_path, state):
    """Issue 19.10: with a pistachio.lock, upstream moving on (a new model revision on the hub) changes nothing."""
    from pistachio_infra.lock.lockfile import load_lock
    from pistachio_infra.sandbox.hf import publish_file

    project = write_project(tmp_path / "proj")
    lock_file = tmp_path / "proj" / "pistachio.lock"
    made = cli("lock", "--sandbox", "--out", str(lock_file))
    assert made.returncode == 0, made.stdout + made.stderr
    locked = load_lock(lock_file)
    publish_file(sandbox.home / "hf", "Wan-AI/Wan2.1-T2V-14B", "config.json", b'{"_class_name": "WanModel"}\n')

    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"from pistachio.lock ({locked.digest()[:12]})" in done.stdout
    assert "differs from" not in done.stdout  # without the lock: the pod followed the hub's new revision
    env = state.result("bootstrap")["lock"]
    assert env["project_lock"]["clean"] and env["project_lock"]["digest"] == locked.digest()

    # a lock the pod cannot be made to match (another image than the cloud runs): refused unless allowed
    from pistachio_infra.lock.lockfile import write_lock

    write_lock(locked.model_copy(update={"image": locked.image.model_copy(update={"name": "other/image:1"})}),
               lock_file)
    refused = cli("train", "pip", "--project", str(project), "--restart")
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert "differs from the lock" in line and "other/image:1" in line and "--allow-drift" in line, line
    allowed = cli("train", "pip", "--project", str(project), "--allow-drift")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    report = sorted((tmp_path / "proj" / "runs" / "pip").glob("*/report.md"))[-1].read_text()
    assert "--allow-drift" in report and "other/image:1" in report
    assert live_pods(sandbox_admin) == []
