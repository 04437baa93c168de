"""One campaign job in its own process: the train pipeline (jobs.run_training) for one job, on the planned GPU class
and data center, with the pod's watchdog max runtime given by the executor from the job's budget allowance.

    python -m pistachio_infra.campaign.worker REQUEST.json RESULT.json

Its own process so that each job has its own signal handling and teardown: SIGTERM (the executor stopping it, or
its parent dying: PR_SET_PDEATHSIG) unwinds the pipeline, which terminates the pod.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    request_path, result_path = Path(argv[0]), Path(argv[1])
    req = json.loads(request_path.read_text())
    from rich.console import Console

    from ..errors import PistachioError
    from ..pipeline.driver import TrainRequest, run_training
    from ..signals import interruptible
    from .spec import load_campaign

    console = Console(highlight=False, soft_wrap=True, width=160)
    result: dict = {"ok": False}
    if req.get("managed"):
        _detach_when_orphaned()
    try:
        with interruptible():
            campaign = load_campaign(req["source"])
            if req.get("adopt"):
                result = adopt(campaign, req["job"], req["adopt"], console)
                return 0 if result.get("ok") else 1
            job = next(j for j in campaign.jobs if j.name == req["job"])
            if req.get("data_center") and not req.get("warm"):
                job = job.model_copy(update={"data_centers": [req["data_center"]]})
            train = TrainRequest(job=job, project=campaign.project, base_dir=campaign.base_dir,
                                 gpu=(req["gpu_class"],), max_hours=float(req["max_hours"]),
                                 volume=bool(req.get("warm")), campaign=campaign.name)
            out = run_training(train, console)
        result = {"ok": True, "job_id": out.job_id, "billed_usd": out.billed_usd, "lora": str(out.lora),
                  "installed": out.installed, "step": out.step, "verdict": out.verdict}
        return 0
    except PistachioError as exc:
        result = {"ok": False, "error": exc.one_line()}
        console.print(f"error: {exc.one_line()}")
        return 1
    except (KeyboardInterrupt, SystemExit) as exc:
        result = {"ok": False, "error": f"stopped ({type(exc).__name__})", "stopped": True}
        return 130
    except Exception as exc:  # reported to the executor, which decides on a retry
        from ..credentials import redact

        result = {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")[:500]}
        console.print_exception()
        return 1
    finally:
        result_path.write_text(json.dumps(result))


def _detach_when_orphaned() -> None:
    """A managed campaign's worker: its controller's death (SIGUSR1, the parent-death signal the executor sets) is
    one Ctrl-C, which a supervised run takes as "detach" (the pod goes on). The kernel sends the signal again when a
    later parent dies too; only the first one counts."""
    import signal

    seen: list[int] = []

    def lost(signum: int, frame: Any) -> None:
        if not seen:
            seen.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGUSR1, lost)


def adopt(campaign: Any, job: str, pod: dict[str, Any], console: Any) -> dict[str, Any]:
    """Watch a job pod a lost controller started (its supervisor trains and publishes on its own) until its result is
    published (done) or the pod ends without one (failed: the executor retries it). The pod is recorded under a job
    of this campaign, so the ledger counts its cost from now and the executor's sweep can stop it."""
    from ..endpoints import resolve_cloud
    from ..pods.lifecycle import DEAD
    from ..runpod import connect
    from ..settings import get_settings
    from ..state import Store
    from .managed import published_results

    cloud = resolve_cloud()
    store = Store()
    api = connect(cloud)
    try:
        job_id = store.create_job(job, cloud=cloud.name, spec={"adopted": pod["pod_name"]}, campaign=campaign.name)
        store.record_pod_intent(pod["pod_name"], cloud=cloud.name, job_id=job_id)
        store.update_pod(pod["pod_name"], pod_id=pod["pod_id"], cost_per_hr=pod.get("per_hr"), status="ready")
        console.print(f"adopted {pod['pod_name']}: waiting for {job}'s published result")
        single = dataclasses.replace(campaign, jobs=tuple(j for j in campaign.jobs if j.name == job))
        gone_at = None
        while True:
            if job in published_results(single, cloud):
                store.finish_job(job_id, "done", {"adopted": pod["pod_name"]})
                return {"ok": True, "job_id": job_id, "billed_usd": 0.0, "adopted": pod["pod_name"]}
            live = api.get_pod(pod["pod_id"])
            if live is None or live.status in DEAD:
                if gone_at is None:
                    gone_at = time.monotonic()
                    store.mark_pod_gone(pod["pod_name"], "ended on its own")
                elif time.monotonic() - gone_at > 30:  # a last look: the publish lands before the pod ends
                    store.finish_job(job_id, "failed", {"error": "its pod ended without a published result"})
                    return {"ok": False, "error": f"its adopted pod {pod['pod_name']} ended without a published "
                                                  "result"}
            time.sleep(max(1.0, get_settings().campaign_poll_s))
    finally:
        api.close()
        store.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
