"""A managed campaign's controller: runs on its CPU pod (campaign/managed.py rents it, installs this version of the
tool there and starts it as a detached job), the same executor as a local `campaign run`.

    python -m pistachio_infra.campaign.controller plan.json

- adopts before it plans: a job whose published result names this campaign is done; a job pod of this campaign
  that is still live (a lost controller's: RunPod's pod list, PISTACHIO_CAMPAIGN / PISTACHIO_CAMPAIGN_JOB in its
  environment) is watched to its published result instead of trained again (worker.py, `adopt`);
- runs the executor with the budget less its own reserve and what earlier controllers spent (the plan file), so
  jobs + controllers never pass the campaign's budget;
- writes status.json beside the plan (read over SSH by `campaign status`) and publishes it, with every pod it knows
  (id, $/h, $ so far), to `<hf_namespace>/<campaign>-campaign` on each change (at most once a minute), every
  PUBLISH_EVERY_S and at the end;
- terminates its own pod when the campaign is over; its guard (started with the pod) ends it at its max runtime,
  and when it died and no job of its runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

# The Hub refuses more than 128 commits an hour ("You have exceeded the rate limit for repository commits (128 per
# hour)"), and the job pods publish with the same token: the ledger goes out on a change at most once a minute, and
# every 10 minutes without one (its pods' costs move on; RunPod's billing is the check after a loss).
PUBLISH_EVERY_S = 600.0
PUBLISH_GAP_S = 60.0


class Controller:
    def __init__(self, plan: dict[str, Any]) -> None:
        from rich.console import Console

        from ..endpoints import resolve_cloud
        from .spec import load_campaign

        self.plan = plan
        self.console = Console(highlight=False, soft_wrap=True, width=160, no_color=True)
        self.cloud = resolve_cloud()
        loaded = load_campaign(plan["campaign_file"])
        settings = loaded.settings.model_copy(update={"budget_usd": max(0.0, float(plan["jobs_budget_usd"]))})
        self.campaign = dataclasses.replace(loaded, settings=settings)
        self.status_path = Path(plan["status_file"])
        self.state = "starting"
        self.outcome: Any = None
        self.adopted: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def say(self, message: str) -> None:
        self.console.print(f"{time.strftime('%H:%M:%S')} {message}")
        self.changed.set()  # a job started or ended: its pod goes into the published ledger at once

    # --- status -------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        from ..commands.campaign import status_data
        from ..state import Store
        from .ledger import pod_cost

        c = self.campaign
        found = status_data(c.name)
        jobs = found[0]["jobs"] if found else []
        store = Store()
        try:
            pods = [{"id": p.pod_id, "name": p.name, "job_id": p.job_id, "usd": pod_cost(p)[0],
                     "per_hr": p.cost_per_hr, "live": p.status != "gone"} for p in store.pods() if p.pod_id]
        finally:
            store.close()
        elapsed = time.time() - float(self.plan.get("created_at") or self.plan["started_at"])
        controller_usd = float(self.plan.get("price_per_hr") or 0.0) * elapsed / 3600
        pods.append({"id": self.plan["pod_id"], "name": self.plan["pod_name"], "job_id": None, "usd": controller_usd,
                     "per_hr": self.plan.get("price_per_hr"), "live": True, "controller": True})
        jobs_usd = sum(j["spent_usd"] for j in jobs)
        return {
            "campaign": c.name, "status": self.state, "budget_usd": float(self.plan["budget_usd"]),
            "jobs_budget_usd": float(self.plan["jobs_budget_usd"]), "reserve_usd": float(self.plan["reserve_usd"]),
            "prior_usd": float(self.plan.get("prior_usd") or 0.0), "controller_usd": controller_usd,
            "spent_usd": jobs_usd + controller_usd + float(self.plan.get("prior_usd") or 0.0),
            "started_at": float(self.plan.get("created_at") or self.plan["started_at"]), "updated_at": time.time(),
            "controller": {"pod_id": self.plan["pod_id"], "pod_name": self.plan["pod_name"],
                           "max_runtime_s": float(self.plan["max_runtime_s"])},
            "adopted": sorted(self.adopted), "jobs": jobs, "pods": pods,
        }

    def write_status(self, *, publish: bool) -> None:
        with self.lock:
            data = self.status()
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.status_path)
            if publish:
                self._publish(data)

    def _publish(self, data: dict[str, Any]) -> None:
        from huggingface_hub import HfApi

        from ..credentials import get_secret
        from .managed import STATUS_FILE, status_repo

        namespace = self.campaign.project.project.hf_namespace
        if not namespace:
            return
        try:
            api = HfApi(endpoint=self.cloud.hf_endpoint, token=get_secret("HF_TOKEN"))
            repo = status_repo(namespace, self.campaign.name)
            api.create_repo(repo, private=True, exist_ok=True)
            api.upload_file(path_or_fileobj=json.dumps(data, indent=1).encode(), path_in_repo=STATUS_FILE,
                            repo_id=repo, commit_message=f"campaign {self.campaign.name}: {data['status']}")
        except Exception as exc:  # the next publish tries again; the live status file is still there
            self.say(f"could not publish the campaign status ({type(exc).__name__})")

    def _status_loop(self, stop: threading.Event) -> None:
        last = 0.0
        while not stop.wait(2.0):
            since = time.monotonic() - last
            due = (self.changed.is_set() and since >= PUBLISH_GAP_S) or since >= PUBLISH_EVERY_S
            if due:
                self.changed.clear()  # a change inside the gap stays pending until the gap has passed
            try:
                self.write_status(publish=due)
            except Exception as exc:
                self.say(f"status: {type(exc).__name__}: {exc}")
            if due:
                last = time.monotonic()

    # --- adopting what a lost controller left ---------------------------------------------------------------

    def adopt(self) -> list[str]:
        """Jobs published already (done) and job pods still live (adopted); returns the jobs left to plan."""
        from ..pipeline.podphase import CAMPAIGN_JOB_ENV
        from ..runpod import connect
        from .managed import campaign_pods, published_results

        c = self.campaign
        api = connect(self.cloud)
        try:
            _, pods = campaign_pods(api, c.name)
        finally:
            api.close()
        done = published_results(c, self.cloud)
        self.done = sorted(done)
        for pod in pods:
            job = pod.env.get(CAMPAIGN_JOB_ENV)
            if job and job not in done and any(j.name == job for j in c.jobs):
                self.adopted[job] = {"pod_id": pod.id, "pod_name": pod.name, "per_hr": pod.cost_per_hr}
                self.say(f"{job}: its pod {pod.name} still runs: adopted (watched to its published result)")
        for job in self.done:
            self.say(f"{job}: published already: done")
        return [j.name for j in c.jobs if j.name not in done]

    # --- the run ------------------------------------------------------------------------------------------

    def run(self) -> int:
        from ..runpod import connect
        from ..signals import shielded
        from ..state import Store
        from .executor import Executor, plan_records
        from .planning import build_plan
        from .records import CampaignRecords

        c = self.campaign
        self.say(f"controller of campaign {c.name}: jobs budget ${c.settings.budget_usd:.4f} "
                 f"(controller reserve ${float(self.plan['reserve_usd']):.4f})")
        stop = threading.Event()
        ticker = threading.Thread(target=self._status_loop, args=(stop,), daemon=True)
        code = 1
        try:
            todo = self.adopt()
            store, records = Store(), CampaignRecords()
            try:
                if todo:
                    api = connect(self.cloud)
                    try:
                        ctx = build_plan(c, api, self.cloud.name, store, jobs=todo)
                    finally:
                        api.close()
                    plan = plan_records(ctx)
                    if ctx.plan.refusal is not None:  # an adopted job still runs within its own watchdog
                        self.say(f"refused: {ctx.plan.refusal.cause}")
                        plan = [p for p in plan if p["job"] in self.adopted]
                    records.save_plan(c.name, self.cloud.name, fingerprint=c.fingerprint, source=str(c.path),
                                      budget_usd=float(self.plan["budget_usd"]), plan=plan,
                                      not_started=ctx.plan.not_started)
                else:
                    records.save_plan(c.name, self.cloud.name, fingerprint=c.fingerprint, source=str(c.path),
                                      budget_usd=float(self.plan["budget_usd"]), plan=[])
                for position, job in enumerate(self.done):
                    records.add_done(c.name, self.cloud.name, job, position=-len(self.done) + position)
                self.state = "running"
                ticker.start()
                self.outcome = Executor(c, self.cloud, store, records, self.say, adopted=self.adopted,
                                        detach_on_loss=True).run()
                self.state = "done" if self.outcome.complete else "stopped"
                code = 0 if self.outcome.complete else 1
            finally:
                records.close()
                store.close()
        except BaseException as exc:
            self.state = "failed"
            self.say(f"controller failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            stop.set()
            with shielded("publishing the campaign's status and ending the controller"):
                try:
                    self.write_status(publish=True)
                finally:
                    self._end()
        return code

    def _end(self) -> None:
        """The campaign is over: terminate this pod (its guard would, later)."""
        from ..runpod import connect

        self.say("campaign over: terminating the controller pod")
        try:
            api = connect(self.cloud)
            try:
                api.terminate_pod(self.plan["pod_id"])
            finally:
                api.close()
        except Exception as exc:  # the guard ends it when no job runs and nobody is logged in
            self.say(f"could not terminate the controller pod ({type(exc).__name__}); its guard will")


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text())
    return Controller(plan).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
