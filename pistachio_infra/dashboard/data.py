"""What the dashboard shows, read from the same state the CLI reads: the SQLite store (pods, jobs, stages, events,
ledger), the campaign tables, each job's work folder (the TensorBoard mirror and the live `progress.json`) and its
run folder (runs/<job>/<stamp>/: report, configs, captions). Read-only: nothing here writes.

Every function returns plain JSON-ready dicts, so the web app, the poll endpoint and `--export` show the same thing.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..campaign.ledger import pod_cost
from ..campaign.records import CampaignRecords
from ..paths import state_dir
from ..pipeline.table import TABLE
from ..pods.layout import EVAL_NAME
from ..state import PodRecord, Store

MAX_TRAIN_POINTS = 2000  # train loss is logged every step: thin it out for the browser
CONFIG_MAX_BYTES = 200_000


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if epoch else "—"


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


class DashboardData:
    """One reader over the state dir (PISTACHIO_HOME or the user's). Each call opens the store afresh: a page always
    shows what is on disk now, and requests served on different threads never share a connection."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or state_dir()

    # --- plumbing ---------------------------------------------------------------------------------------

    def _store(self) -> Store:
        return Store(self.home / "state.sqlite3")

    def _campaigns(self) -> list[dict[str, Any]]:
        records = CampaignRecords(self.home / "state.sqlite3")
        try:
            return [{**c, "jobs": records.jobs(c["name"], c["cloud"])} for c in records.campaigns()]
        finally:
            records.close()

    def work_dir(self, job: dict[str, Any]) -> Path:
        return self.home / "work" / f"{job['name']}-{job['id']}"

    def progress(self, job: dict[str, Any]) -> dict[str, Any] | None:
        path = self.work_dir(job) / "progress.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # --- Now ----------------------------------------------------------------------------------------------

    def now(self) -> dict[str, Any]:
        t = time.time()
        store = self._store()
        try:
            jobs = store.jobs()
            by_id = {j["id"]: j for j in jobs}
            pods = [self._pod(p, by_id, t) for p in store.pods(live_only=True) if p.status != "intent" or p.pod_id]
            running = [self._running(store, j, t) for j in jobs if j["status"] == "running"]
            recent = [self._summary(store, j) for j in reversed(jobs[-30:])]
        finally:
            store.close()
        campaigns = [self._campaign(c, t) for c in self._campaigns() if c["status"] in ("running", "planned")]
        return {"generated_at": _when(t), "pods": pods, "running": running, "campaigns": campaigns,
                "recent": recent, "spent_live": sum(p["spent_usd"] for p in pods)}

    def _pod(self, p: PodRecord, jobs: dict[int, dict[str, Any]], t: float) -> dict[str, Any]:
        usd, seconds = pod_cost(p, t)
        job = jobs.get(p.job_id) if p.job_id is not None else None
        return {
            "name": p.name, "pod_id": p.pod_id, "gpu_class": p.gpu_class, "data_center": p.data_center_id,
            "cost_per_hr": p.cost_per_hr, "status": p.status, "uptime_s": seconds, "spent_usd": usd,
            "purpose": p.purpose, "job": job["name"] if job else None, "job_id": p.job_id,
            "watchdog_deadline": _when(p.watchdog_deadline),
            "watchdog_left_s": (p.watchdog_deadline - t) if p.watchdog_deadline else None,
        }

    def _running(self, store: Store, job: dict[str, Any], t: float) -> dict[str, Any]:
        stages = store.stages(job["id"])
        current = next((s.stage for s in reversed(stages) if s.status == "running"),
                       stages[-1].stage if stages else "preflight")
        spent = sum(pod_cost(p, t)[0] for p in store.pods(job_id=job["id"]))
        row = {"id": job["id"], "name": job["name"], "campaign": job["campaign"], "stage": current,
               "started": _when(job["created_at"]), "spent_usd": spent, "step": None, "total": None, "loss": None,
               "eval_loss": None, "eta_s": None, "limit": self._limit(job)}
        train = next((s for s in stages if s.stage == "train"), None)
        progress = self.progress(job) if train is not None else None
        if progress:
            row.update(step=progress.get("step"), total=progress.get("total"), loss=_finite(progress.get("loss")),
                       eval_loss=_finite(progress.get("eval_loss")))
            per_step = _finite(progress.get("seconds_per_step"))
            if per_step and progress.get("total") and train and train.status == "running":
                row["eta_s"] = max(0, progress["total"] - progress["step"]) * per_step
        return row

    def _limit(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The money this job may spend: its campaign allowance, else its own budget_usd."""
        if job["campaign"]:
            for c in self._campaigns():
                if c["name"] == job["campaign"] and c["cloud"] == job["cloud"]:
                    row = next((r for r in c["jobs"] if r["job"] == job["name"]), None)
                    if row and row.get("allowance_usd"):
                        return {"usd": row["allowance_usd"], "kind": "allowance"}
        budget = (job["spec"].get("job") or {}).get("budget_usd")
        return {"usd": budget, "kind": "budget"} if budget else None

    def _campaign(self, c: dict[str, Any], t: float) -> dict[str, Any]:
        store = self._store()
        try:
            ids = [j["id"] for j in store.jobs(campaign=c["name"]) if j["cloud"] == c["cloud"]]
            spent = sum(pod_cost(p, t)[0] for i in ids for p in store.pods(job_id=i))
        finally:
            store.close()
        counts: dict[str, int] = defaultdict(int)
        for row in c["jobs"]:
            counts[row["status"]] += 1
        return {"name": c["name"], "cloud": c["cloud"], "status": c["status"], "budget_usd": c["budget_usd"],
                "spent_usd": spent, "jobs": len(c["jobs"]), "counts": dict(counts),
                "rows": [{k: r.get(k) for k in ("job", "status", "gpu_class", "est_usd", "allowance_usd")}
                         for r in c["jobs"]]}

    def _summary(self, store: Store, job: dict[str, Any]) -> dict[str, Any]:
        select = self._stage_result(store, job["id"], "select")
        return {"id": job["id"], "name": job["name"], "status": job["status"], "campaign": job["campaign"],
                "created": _when(job["created_at"]), "verdict": select.get("verdict"), "step": select.get("step"),
                "billed_usd": sum(pod_cost(p)[0] for p in store.pods(job_id=job["id"]))}

    @staticmethod
    def _stage_result(store: Store, job_id: int, stage: str) -> dict[str, Any]:
        rec = next((r for r in store.stages(job_id) if r.stage == stage), None)
        return dict(rec.result or {}) if rec is not None and rec.status == "done" else {}

    # --- one job ------------------------------------------------------------------------------------------

    def job_ids(self) -> list[int]:
        store = self._store()
        try:
            return [j["id"] for j in store.jobs()]
        finally:
            store.close()

    def job(self, job_id: int) -> dict[str, Any] | None:
        t = time.time()
        store = self._store()
        try:
            job = store.job(job_id)
            if job is None:
                return None
            stages = store.stages(job_id)
            events = store.events(job_id)
            pods = store.pods(job_id=job_id)
            ledger = [r for r in store.ledger() if r["job_id"] == job_id]
            results = {s.stage: dict(s.result or {}) for s in stages if s.status == "done"}
            running = self._running(store, job, t) if job["status"] == "running" else None
        finally:
            store.close()
        spec_job = job["spec"].get("job") or {}
        run_folder = Path(job["spec"]["run_folder"]) if job["spec"].get("run_folder") else None
        select = results.get("select", {})
        train = results.get("train", {})
        run = train.get("run") or next((e["name"] for e in reversed(events) if e["kind"] == "train_run"), None)
        provision = results.get("provision") or next(
            (dict(s.result or {}) for s in stages if s.stage == "provision"), {})
        billed = sum(r["billed_usd"] or 0.0 for r in ledger) if ledger else sum(pod_cost(p, t)[0] for p in pods)
        estimate = next((e["usd"] for e in reversed(events) if e["kind"] == "estimate"), None)
        hub = next((r.get("hub_url") or r.get("url") for s, r in results.items() if s == "publish"), None) or next(
            (e.get("url") for e in events if e["kind"] == "publish" and e.get("url")), None)
        return {
            "id": job_id, "name": job["name"], "status": job["status"], "campaign": job["campaign"],
            "cloud": job["cloud"], "created": _when(job["created_at"]), "finished": _when(job["finished_at"]),
            "error": (job["result"] or {}).get("error"), "character": spec_job.get("character"),
            "trigger": spec_job.get("trigger"), "settings": _settings(spec_job), "live": running,
            "gpu_class": provision.get("gpu_class"), "data_center": provision.get("data_center"),
            "pod_id": provision.get("pod_id"), "cost_per_hr": provision.get("cost_per_hr"),
            "selection": {k: select.get(k) for k in ("step", "checkpoint", "verdict", "eval_loss", "message")}
            | {"warnings": select.get("warnings") or []} if select else None,
            "curve": self.curve(job, run, train.get("saved")),
            "stages": _stage_rows(stages),
            "cost": {"estimated_usd": estimate, "billed_usd": billed, "pods": len([p for p in pods if p.pod_id])},
            "lora": results.get("install", {}).get("installed") or results.get("harvest", {}).get("path"),
            "hub_url": hub, "wandb_url": train.get("wandb_url") or next(
                (e.get("url") for e in events if e["kind"] == "wandb" and e.get("url")), None),
            "run_folder": str(run_folder) if run_folder else None,
            "report": str(run_folder / "report.md") if run_folder and (run_folder / "report.md").is_file() else None,
            "configs": self._configs(job, run_folder),
            "dataset": self._dataset(job, run_folder, results),
            "samples": _samples(results.get("verify")),
        }

    def curve(self, job: dict[str, Any], run: str | None, saved: list[str] | None) -> dict[str, Any] | None:
        """Eval and train loss of the job's run from the local TensorBoard mirror; with the saved checkpoints and
        the smoothed eval loss once training is done (the same selection the CLI made)."""
        if not run:
            return None
        run_dir = self.work_dir(job) / "run" / run
        if not run_dir.is_dir():
            return None
        from ..errors import PistachioError
        from ..selection.tbevents import TRAIN_LOSS, read_scalars

        try:
            scalars = read_scalars(run_dir)
        except PistachioError:
            return None
        except Exception:  # an event file being written as we read it: the next poll gets it
            return None
        evals = scalars.series(f"{EVAL_NAME}/loss")
        train = scalars.series(TRAIN_LOSS)
        if len(train) > MAX_TRAIN_POINTS:
            stride = math.ceil(len(train) / MAX_TRAIN_POINTS)
            train = train[::stride] + ([train[-1]] if (len(train) - 1) % stride else [])
        out: dict[str, Any] = {
            "eval": [[p.step, _finite(p.value)] for p in evals],
            "train": [[p.step, _finite(p.value)] for p in train],
            "smoothed": [], "checkpoints": [],
        }
        if saved is not None and evals:
            from ..selection.choose import select_checkpoint

            try:
                sel = select_checkpoint(run_dir, eval_name=EVAL_NAME, saved_folders=saved)
            except PistachioError:
                return out
            out["smoothed"] = [[r.step, _finite(r.smoothed)] for r in sel.rows]
            out["checkpoints"] = [[r.step, _finite(r.eval_loss), sel.checkpoints.get(r.step)]
                                  for r in sel.rows if r.has_lora]
        return out

    def _configs(self, job: dict[str, Any], run_folder: Path | None) -> list[dict[str, str]]:
        """The rendered configs as copied into the run folder (keys blanked); the work copies are never shown, as
        only the report's copies are scrubbed of secrets."""
        folder = run_folder / "configs" if run_folder else None
        if folder is None or not folder.is_dir():
            return []
        return [{"name": p.name, "text": p.read_text(errors="replace")[:CONFIG_MAX_BYTES]}
                for p in sorted(folder.iterdir()) if p.is_file()]

    def _dataset(self, job: dict[str, Any], run_folder: Path | None, results: dict[str, dict]) -> dict[str, Any]:
        """Each image with its caption, its side of the split and what was flagged about it."""
        from ..dataset.scan import image_files

        spec_job = job["spec"].get("job") or {}
        folder = Path(spec_job["dataset"]) if spec_job.get("dataset") else None
        images = image_files(folder) if folder is not None and folder.is_dir() else []
        captions_dir = run_folder / "captions" if run_folder else None
        if captions_dir is None or not captions_dir.is_dir():
            captions_dir = self.work_dir(job) / "captions"
        split = results.get("split", {})
        train, evals = set(split.get("train") or []), set(split.get("eval") or [])
        dropped = set(results.get("caption", {}).get("dropped") or [])
        trigger = spec_job.get("trigger") or ""
        flags = _preflight_flags(folder, trigger) if images else {}
        rows = []
        for path in images:
            caption_file = captions_dir / f"{path.stem}.txt"
            caption = caption_file.read_text(errors="replace").strip() if caption_file.is_file() else None
            why = list(flags.get(path.name, []))
            if path.name in dropped:
                why.append("dropped: no caption after a retry")
            elif caption is not None and not caption:
                why.append("empty caption")
            elif caption and trigger and not caption.startswith(trigger):
                why.append(f"caption does not start with {trigger!r}")
            side = "train" if path.name in train else "eval" if path.name in evals else None
            rows.append({"name": path.name, "caption": caption, "split": side, "flags": why})
        return {"folder": str(folder) if folder else None, "images": rows,
                "train": len(train), "eval": len(evals), "flagged": sum(1 for r in rows if r["flags"])}

    def image_path(self, job_id: int, name: str) -> Path | None:
        """The dataset image `name` of a job, or one of its verify samples (`samples~<file>`), only if it is one of
        the job's images or samples (no other file is served)."""
        store = self._store()
        try:
            job = store.job(job_id)
            verify = self._stage_result(store, job_id, "verify") if job is not None else {}
        finally:
            store.close()
        folder = (job or {}).get("spec", {}).get("job", {}).get("dataset")
        if folder and Path(folder).is_dir():
            from ..dataset.scan import image_files

            found = next((p for p in image_files(Path(folder)) if p.name == name), None)
            if found is not None:
                return found
        samples = _samples(verify)
        if samples is None or not name.startswith(SAMPLE_PREFIX):
            return None
        listed = {samples["sheet"]} | {r[k] for r in samples["rows"] for k in ("without", "with_lora")}
        path = Path(verify["folder"]) / name[len(SAMPLE_PREFIX):]
        return path if name in listed and path.is_file() else None

    # --- a character over time ----------------------------------------------------------------------------

    def characters(self) -> list[str]:
        store = self._store()
        try:
            return sorted({j["name"] for j in store.jobs()})
        finally:
            store.close()

    def character(self, name: str) -> dict[str, Any] | None:
        store = self._store()
        try:
            jobs = [j for j in store.jobs() if j["name"] == name]
            runs = []
            for job in jobs:
                train = self._stage_result(store, job["id"], "train")
                select = self._stage_result(store, job["id"], "select")
                provision = self._stage_result(store, job["id"], "provision")
                events = store.events(job["id"])
                run = train.get("run") or next(
                    (e["name"] for e in reversed(events) if e["kind"] == "train_run"), None)
                curve = self.curve(job, run, None)
                runs.append({
                    "id": job["id"], "label": f"run {job['id']} ({_when(job['created_at'])[:16]})",
                    "status": job["status"], "campaign": job["campaign"], "created": _when(job["created_at"]),
                    "gpu_class": provision.get("gpu_class"), "settings": _settings(job["spec"].get("job") or {}),
                    "verdict": select.get("verdict"), "step": select.get("step"),
                    "eval_loss": _finite(select.get("eval_loss")),
                    "eval": curve["eval"] if curve else [],
                    "billed_usd": sum(pod_cost(p)[0] for p in store.pods(job_id=job["id"])),
                })
        finally:
            store.close()
        if not jobs:
            return None
        return {"name": name, "character": (jobs[-1]["spec"].get("job") or {}).get("character"), "runs": runs}

    # --- money --------------------------------------------------------------------------------------------

    def money(self) -> dict[str, Any]:
        t = time.time()
        store = self._store()
        try:
            jobs = {j["id"]: j for j in store.jobs()}
            pods = [p for p in store.pods() if p.pod_id]
            ledger = {r["pod_id"]: r for r in store.ledger()}
            gpu = {i: self._stage_result(store, i, "provision").get("gpu_class") for i in jobs}
        finally:
            store.close()
        campaigns = {(c["name"], c["cloud"]): c for c in self._campaigns()}

        def campaign_of(p: PodRecord) -> str:
            job = jobs.get(p.job_id) if p.job_id is not None else None
            return (job or {}).get("campaign") or "(no campaign)"

        def cost(p: PodRecord, at: float) -> float:
            row = ledger.get(p.pod_id or "")
            if row is not None and p.gone_at is not None and at >= p.gone_at:
                return float(row["billed_usd"] or 0.0)  # what the cloud billed, once the pod is gone
            end = min(at, p.gone_at or at)
            return (p.cost_per_hr or 0.0) * max(0.0, end - p.created_at) / 3600

        groups: dict[str, list[PodRecord]] = defaultdict(list)
        for p in pods:
            groups[campaign_of(p)].append(p)
        times = sorted({x for p in pods for x in (p.created_at, p.gone_at) if x} | ({t} if pods else set()))
        series = []
        for name, members in sorted(groups.items()):
            budget = next((c["budget_usd"] for (n, _), c in campaigns.items() if n == name), None)
            points = [[x, round(sum(cost(p, x) for p in members), 6)] for x in times]
            series.append({"name": name, "budget_usd": budget, "points": points, "spent_usd": points[-1][1]})

        finished: dict[str, list[float]] = defaultdict(list)
        for job_id, job in jobs.items():
            if job["status"] != "done":
                continue
            usd = sum(cost(p, t) for p in pods if p.job_id == job_id)
            finished[gpu.get(job_id) or "unknown"].append(usd)
        per_class = [{"gpu_class": k, "loras": len(v), "mean_usd": sum(v) / len(v), "min_usd": min(v),
                      "max_usd": max(v), "total_usd": sum(v)} for k, v in sorted(finished.items())]
        budgets = [{"name": c["name"], "cloud": c["cloud"], "budget_usd": c["budget_usd"], "status": c["status"],
                    "spent_usd": next((s["spent_usd"] for s in series if s["name"] == c["name"]), 0.0)}
                   for c in campaigns.values()]
        return {"generated_at": _when(t), "series": series, "per_class": per_class, "campaigns": budgets,
                "total_usd": sum(s["spent_usd"] for s in series)}


SAMPLE_PREFIX = "samples~"  # a verify sample's name in /files/<job>/ (dataset images keep their own names)


def _samples(verify: dict[str, Any] | None) -> dict[str, Any] | None:
    """The verify stage's samples as served names (rows: prompt, seed, kind, without, with_lora; the sheet)."""
    if not verify or not verify.get("samples") or not verify.get("folder"):
        return None
    rows = [{"prompt": r["prompt"], "seed": r["seed"], "kind": r["kind"],
             "without": SAMPLE_PREFIX + r["without"], "with_lora": SAMPLE_PREFIX + r["with_lora"]}
            for r in verify["samples"]]
    sheet = Path(verify["sheet"]).name if verify.get("sheet") else "samples.png"
    # in words, not the URL: a rented pod's ComfyUI is gone after the run, and an exported page links nowhere live
    where = {"pod": "a rented ComfyUI pod", "comfyui": "your ComfyUI"}.get(verify.get("where") or "")
    return {"rows": rows, "sheet": SAMPLE_PREFIX + sheet, "where": where,
            "seconds": verify.get("seconds")}


def _settings(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("base_model", "epochs", "checkpoints", "learning_rate", "rank", "gpu", "eval_split", "seed")
    return {k: job[k] for k in keys if job.get(k) is not None}


def _stage_rows(stages: list[Any]) -> list[dict[str, Any]]:
    order = {row.name: i for i, row in enumerate(TABLE)}
    rows = []
    for s in sorted(stages, key=lambda s: (order.get(s.stage, len(order)), s.started_at)):
        end = s.finished_at
        rows.append({"stage": s.stage, "status": s.status, "started": _when(s.started_at),
                     "seconds": (end - s.started_at) if end else None, "error": s.error})
    return rows


_FLAG_CACHE: dict[tuple[str, float, str], dict[str, list[str]]] = {}


def _preflight_flags(folder: Path, trigger: str) -> dict[str, list[str]]:
    """Per image, the warnings the dataset check gives about it (small, huge, odd aspect, duplicate, GIF).
    Cached by the folder's mtime: decoding every image on every poll would be wasteful."""
    from ..dataset.scan import scan_dataset

    key = (str(folder), folder.stat().st_mtime, trigger)
    if key not in _FLAG_CACHE:
        try:
            report = scan_dataset(folder, trigger or None)
        except Exception:
            return {}
        flags: dict[str, list[str]] = defaultdict(list)
        names = {i.name for i in report.images}
        for warning in report.warnings:
            name = warning.split(":", 1)[0].split(" is identical", 1)[0]
            if name in names:
                flags[name].append(warning.removeprefix(f"{name}: "))
        _FLAG_CACHE[key] = dict(flags)
    return _FLAG_CACHE[key]
