#!/usr/bin/env python3
"""Issue 14's closing numbers, in the sandbox: billed pod-seconds of a detached job vs an attached one, and the
client SIGKILLed at every stage (never restarted, then rerun once).

    .venv/bin/python scripts/bench_detach.py [--ratio-only | --matrix-only] [--stages a,b] [--json]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python scripts/bench_detach.py --matrix-only   # "before"

Each measurement is the real CLI as a subprocess against a fresh sandbox (PISTACHIO_HOME of its own), on a
24-image generated dataset, with test timings for the pod's watchdog (idle and "nobody came" limits of seconds).

- ratio: the same job trained attached without a durable destination (the client drives every stage) and with
  `train --detach` (the pod's supervisor trains, selects, publishes and releases the pod): billed seconds are the
  sandbox's create → terminated of each job's pods; printed as detached / attached.
- matrix: for each stage the client is held there (PISTACHIO_PAUSE_AT) and SIGKILLed; nothing runs until every pod
  of the job is gone (the cap is printed when one is not); then: pods rented, whether the LoRA reached the HF repo
  on its own, billed $; then one rerun of `train` to the end: training launches in total and $ in total.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "hf_" + "b" * 24
FAST = {"PISTACHIO_POD_POLL_S": "0.2", "PISTACHIO_POD_READY_TIMEOUT_S": "90", "PISTACHIO_POD_TERMINATE_TIMEOUT_S": "90",
        "PISTACHIO_POD_LOOKUP_S": "2", "PISTACHIO_WATCHDOG_POLL_S": "1", "PISTACHIO_WATCHDOG_HEARTBEAT_S": "1",
        "PISTACHIO_WATCHDOG_RETRY_S": "3", "PISTACHIO_WATCHDOG_IDLE_S": "10", "PISTACHIO_WATCHDOG_GRACE_S": "20",
        "PISTACHIO_WATCHDOG_NOBODY_CAME_S": "10", "PISTACHIO_TRAIN_POLL_S": "0.2", "PISTACHIO_TRAIN_SYNC_S": "0.5",
        "PISTACHIO_RECONNECT_S": "30"}
STAGES = ("provision", "bootstrap", "upload", "caption", "split", "train-launched", "select", "publish")
CAP_S = 240.0  # how long a killed job's pods are given to end on their own


class Bench:
    def __init__(self, root: Path, seconds_per_step: float) -> None:
        from pistachio_infra.sandbox import control

        self.root = root
        self.env = {**os.environ, **FAST, "PISTACHIO_HOME": str(root / "home"), "PISTACHIO_SANDBOX": "1",
                    "HF_TOKEN": TOKEN}
        os.environ.update({"PISTACHIO_HOME": str(root / "home"), "PISTACHIO_SANDBOX": "1"})
        scenario = root / "scenario.toml"
        scenario.write_text(f"[standin.trainer]\nseconds_per_step = {seconds_per_step}\n")
        self.info = control.start(root / "home" / "sandbox", scenario)
        self.admin = control.Admin(self.info)

    def stop(self) -> None:
        from pistachio_infra.sandbox import control

        control.stop(self.root / "home" / "sandbox")

    def project(self, name: str, *, publish: bool, epochs: int) -> Path:
        import tomlkit

        from pistachio_infra.dataset.demo import generate_dataset

        folder = self.root / name
        generate_dataset(folder / "images", 24)
        project = {"name": name, "comfyui_loras_dir": "ComfyUI/models/loras",
                   **({"hf_namespace": f"bench-{name}"} if publish else {})}
        doc = {"project": project, "jobs": {"pip": {"character": "Pip", "trigger": "pip7", "dataset": "images",
                                                    "gpu": ["a6000", "a40"], "epochs": epochs, "checkpoints": 4}}}
        (folder / "pistachio.toml").write_text(tomlkit.dumps(doc))
        return folder / "pistachio.toml"

    def cli(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "pistachio_infra.cli", *args]
        return subprocess.Popen(cmd, env={**self.env, **(extra or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def pods(self, since: set[str]) -> list[dict]:
        return [p for p in self.admin.pods() if p["id"] not in since]

    def billed(self, pods: list[dict]) -> tuple[float, float]:
        """(pod-seconds, USD) of these pods, as the sandbox bills them."""
        now = time.time()
        seconds = sum((p["terminated_at"] or now) - p["created_at"] for p in pods)
        usd = self.admin.billing()
        return seconds, sum(usd.get(p["id"], 0.0) for p in pods)

    def wait_gone(self, since: set[str], cap: float = CAP_S) -> bool:
        give_up = time.monotonic() + cap
        while time.monotonic() < give_up:
            if all(p.get("status") == "TERMINATED" for p in self.pods(since)):
                return True
            time.sleep(0.5)
        return False

    def published(self, namespace: str) -> bool:
        from huggingface_hub import HfApi

        try:
            info = HfApi(endpoint=self.info.hf_endpoint, token=TOKEN).model_info(f"{namespace}/pip-lora")
        except Exception:
            return False
        return "adapter_model.safetensors" in {s.rfilename for s in info.siblings or []}


def _last_job_id() -> int:
    from pistachio_infra.state import Store

    store = Store()
    try:
        jobs = store.jobs()
        return jobs[-1]["id"] if jobs else 0
    finally:
        store.close()


def _state(after: int, what: str) -> object:
    """A fresh read of the state store (events / stage status) of the bench's newest job, if newer than `after`."""
    from pistachio_infra.state import Store

    store = Store()
    try:
        jobs = [j for j in store.jobs() if j["id"] > after]
        if not jobs:
            return None
        job_id = jobs[-1]["id"]
        if what == "launches":
            return len([e for e in store.events(job_id) if e["kind"] == "train_launch"])
        if what.startswith("pod:"):  # the pod's supervisor entered this stage (seen by the watching client)
            return any(e["kind"] == "stage" and e.get("supervisor") and e.get("stage") == what[4:]
                       for e in store.events(job_id))
        rec = next((r for r in store.stages(job_id) if r.stage == what), None)
        return rec.status if rec else None
    finally:
        store.close()


def ratio(bench: Bench, epochs: int) -> dict:
    out = {}
    for mode in ("attached", "detached"):
        since = {p["id"] for p in bench.admin.pods()}
        project = bench.project(f"ratio-{mode}", publish=mode == "detached", epochs=epochs)
        t0 = time.monotonic()
        proc = bench.cli("train", "pip", "--project", str(project), *(["--detach"] if mode == "detached" else []))
        text, _ = proc.communicate(timeout=1800)
        client_s = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{mode} run failed:\n{text[-3000:]}")
        bench.wait_gone(since)
        seconds, usd = bench.billed(bench.pods(since))
        out[mode] = {"billed_pod_s": round(seconds, 1), "billed_usd": round(usd, 4), "client_s": round(client_s, 1)}
    out["detached_over_attached"] = round(out["detached"]["billed_pod_s"] / out["attached"]["billed_pod_s"], 3)
    return out


def matrix(bench: Bench, stages: list[str], epochs: int, pod_points: set[str]) -> list[dict]:
    rows = []
    for stage in stages:
        since = {p["id"] for p in bench.admin.pods()}
        name = f"kill-{stage}"
        project = bench.project(name, publish=True, epochs=epochs)
        release = bench.root / f"{name}.release"
        os.environ["PISTACHIO_HOME"] = bench.env["PISTACHIO_HOME"]
        after = _last_job_id()  # the job of this row is newer
        proc = bench.cli("train", "pip", "--project", str(project),
                         extra={"PISTACHIO_PAUSE_AT": f"{stage}:@{release}"})
        give_up = time.monotonic() + 600
        while time.monotonic() < give_up and proc.poll() is None:
            if stage == "train-launched":
                held = (_state(after, "launches") or 0) > 0
            elif stage in pod_points:
                held = bool(_state(after, f"pod:{stage}"))
            else:
                held = _state(after, stage) == "running"
            if held:
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        release.touch()
        gone = bench.wait_gone(since)
        seconds, usd = bench.billed(bench.pods(since))
        row = {"stage": stage, "pods_rented": len(bench.pods(since)), "pods_left_live": 0 if gone else
               len([p for p in bench.pods(since) if p.get("status") != "TERMINATED"]),
               "published_without_client": bench.published(f"bench-{name}"), "billed_usd": round(usd, 4),
               "billed_pod_s": round(seconds, 1)}
        rerun = bench.cli("train", "pip", "--project", str(project), extra={"PISTACHIO_PAUSE_AT": ""})
        text, _ = rerun.communicate(timeout=1800)
        bench.wait_gone(since)
        seconds, usd = bench.billed(bench.pods(since))
        row.update(rerun_ok=rerun.returncode == 0, pods_total=len(bench.pods(since)),
                   training_launches=_state(after, "launches"), total_usd=round(usd, 4),
                   total_pod_s=round(seconds, 1))
        if rerun.returncode != 0:
            row["rerun_error"] = text.strip().splitlines()[-1][:200] if text.strip() else "?"
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratio-only", action="store_true")
    parser.add_argument("--matrix-only", action="store_true")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each job (3 steps each)")
    parser.add_argument("--seconds-per-step", type=float, default=0.5)
    parser.add_argument("--pod-points", default="",
                        help="stages whose pause point the pod's supervisor honours (this branch: "
                             "caption,split,select,publish); empty for a checkout without the supervisor")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bench = Bench(Path(tempfile.mkdtemp(prefix="pistachio-bench-detach-")), args.seconds_per_step)
    numbers: dict = {}
    try:
        if not args.matrix_only:
            numbers["ratio"] = ratio(bench, args.epochs)
        if not args.ratio_only:
            numbers["matrix"] = matrix(bench, [s for s in args.stages.split(",") if s], args.epochs,
                                       {s for s in args.pod_points.split(",") if s})
    finally:
        bench.stop()
    if args.json:
        print(json.dumps(numbers, indent=2))
        return 0
    if "ratio" in numbers:
        r = numbers["ratio"]
        print(f"attached: {r['attached']['billed_pod_s']} pod-s (${r['attached']['billed_usd']}), "
              f"detached: {r['detached']['billed_pod_s']} pod-s (${r['detached']['billed_usd']}); "
              f"detached / attached = {r['detached_over_attached']}")
    for row in numbers.get("matrix", []):
        alone = row["published_without_client"]
        print(f"{row['stage']:15} pods left {row['pods_left_live']}  published alone {alone!s:5}  "
              f"${row['billed_usd']:.4f} | rerun ok {row['rerun_ok']!s:5} pods {row['pods_total']} "
              f"launches {row['training_launches']} ${row['total_usd']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
