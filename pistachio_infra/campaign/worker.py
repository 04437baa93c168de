"""One campaign job in its own process: the train pipeline (jobs.run_training) for one job, on the planned GPU class
and data center, with the pod's watchdog max runtime given by the executor from the job's budget allowance.

    python -m pistachio_infra.campaign.worker REQUEST.json RESULT.json

Its own process so that each job has its own signal handling and teardown: SIGTERM (the executor stopping it, or
its parent dying: PR_SET_PDEATHSIG) unwinds the pipeline, which terminates the pod.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    try:
        with interruptible():
            campaign = load_campaign(req["source"])
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
