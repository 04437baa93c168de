"""The pod-side supervisor: after the upload, everything that needs the pod runs on the pod, so the laptop can close.

It runs as one detached job ("supervisor", remote/jobs.py) with the pod's own Python (stdlib + numpy, safetensors,
tensorboard, huggingface_hub: the pod image), shipped as a zipapp built from our own modules (pipeline/detach.py:
this file, pipeline/trainlog.py, pipeline/captioncheck.py, dataset/split.py, selection/, pipeline/publish.py), and
walks the stage table's supervised rows (pipeline/table.py `Row.supervised`, listed in its plan) in order:

  caption  JoyCaption for the images without a user caption, every caption checked, failures retried alone once,
           then dropped or the stage fails (the same rules as the client: pipeline/captioncheck.py)
  split    the deterministic train/eval split (dataset/split.py) into the dataset folders
  train    DiffusionPipe, resumed from the run's last DeepSpeed checkpoint when one is on the pod
  select   the same selection code as the client (selection/choose.py) on the run's event files
  publish  the chosen adapter, its config, captions, configs, loss data and a model card to the private HF repo
           (huggingface_hub, HF_TOKEN from the job's environment only) and/or the job's network volume
then marks the job finished and harvested and releases the pod: the watchdog terminates it with the pod-scoped key.

Its progress (stage, step/total, loss, events, each stage's result) is one JSON file the client reads over SSH
(`state_file` in the plan), replaced atomically. A supervisor started again (a rerun after the pod's supervisor was
killed) skips the stages its state file already holds. Standard library only at import time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULT_FILE = "pistachio_result.json"  # in the published repo: what the client records when it pulls the result
CHECKPOINT_DIR = re.compile(r"^(?:step|epoch)\d+$")
LORA_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"


class Supervisor:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.state_file = Path(plan["state_file"])
        self.state: dict[str, Any] = {"status": "running", "stage": None, "step": 0, "total": 0, "loss": None,
                                      "epoch": 1, "events": [], "results": {}, "launches": [], "run": None,
                                      "error": None}
        if self.state_file.is_file():
            try:
                old = json.loads(self.state_file.read_text())
            except ValueError:
                old = {}
            self.state.update({k: old[k] for k in ("results", "launches", "run", "events") if k in old})
        self.state.update(status="running", error=None, pid=os.getpid())

    # --- the state file ------------------------------------------------------------------------------------

    def save(self) -> None:
        self.state["updated_at"] = time.time()
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_file)

    def event(self, message: str) -> None:
        self.state["events"] = [*self.state["events"], {"at": time.time(), "message": message}][-50:]
        self.save()

    # --- the walk --------------------------------------------------------------------------------------------

    def run(self) -> int:
        stages = {"caption": self.caption, "split": self.split, "train": self.train, "select": self.select,
                  "publish": self.publish}
        try:
            for name in self.plan["stages"]:
                if name in self.state["results"]:
                    continue
                self.state["stage"] = name
                self.event(f"{name} started")
                pause(name)
                self.state["results"][name] = stages[name]()
                self.event(f"{name} done")
            self.finish()
        except BaseException as exc:
            self.state.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:1000])
            self.save()
            traceback.print_exc()
            return 1
        return 0

    def finish(self) -> None:
        """Mark the job finished and harvested (the result is safe), then release the pod to its watchdog."""
        self.state.update(status="done", stage="finish")
        self.save()
        for marker in ("finished_marker", "harvested_marker", "release_marker"):
            Path(self.plan["markers"][marker]).touch()
        self.event("released the pod: the watchdog terminates it")

    # --- caption and split ------------------------------------------------------------------------------------

    def _captioner(self, argv: list[str], names: list[str], filelist: str, job: str) -> None:
        from pistachio_infra.pipeline.captioncheck import captioner_problems, written_caption

        spec = self.plan["caption"]
        Path(filelist).parent.mkdir(parents=True, exist_ok=True)
        Path(filelist).write_text("\n".join(f"{spec['images_dir']}/{n}" for n in names) + "\n")
        env = {**os.environ, **spec["env"]}
        token = os.environ.get("PISTACHIO_CAPTION_HF_TOKEN")
        if token:
            env["HF_TOKEN"] = token  # the model host's token, not the publishing one
        else:
            env.pop("HF_TOKEN", None)
        log_dir = Path(self.plan["jobs_dir"]) / job
        log_dir.mkdir(parents=True, exist_ok=True)
        self.state.update(step=0, total=len(names), loss=None)
        lines: list[str] = []
        with open(log_dir / "log", "wb") as log:
            proc = subprocess.Popen(argv, cwd=spec["cwd"], env=env, stdout=subprocess.PIPE, stderr=log,
                                    stdin=subprocess.DEVNULL)
            assert proc.stdout is not None
            for raw in proc.stdout:
                log.write(raw)
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if written_caption(line) is not None:
                    self.state["step"] += 1
                    self.save()
            code = proc.wait()
        (log_dir / "exit_code").write_text(f"{code}\n")
        if code != 0:
            raise RuntimeError(f"joy-caption-batch exited with {code}: "
                               + " | ".join(line for line in lines[-5:] if line.strip()))
        text = (log_dir / "log").read_text(errors="replace").splitlines()
        for message in captioner_problems(text):
            self.event(f"captioner: {message.strip()[:200]}")

    def caption(self) -> dict[str, Any]:
        from pistachio_infra.pipeline.captioncheck import failed_captions, listed, to_drop

        spec = self.plan["caption"]
        need, images, trigger = spec["need"], Path(spec["images_dir"]), spec["trigger"]
        dropped: list[str] = []
        if need:
            self.event(f"captioning {len(need)} image(s) with JoyCaption")
            self._captioner(spec["argv"], need, spec["filelist"], "caption")
            failed = failed_captions(images, need, trigger)
            if failed:
                self.event(f"{len(failed)} image(s) got no valid caption; retrying them once, one per batch")
                self._captioner(spec["retry_argv"], sorted(failed), spec["retry_filelist"], "caption-retry")
                failed = failed_captions(images, sorted(failed), trigger)
            if failed:
                dropped = to_drop(spec["names"], failed, spec["min_images"])
                for name in dropped:
                    (images / f"{Path(name).stem}.txt").unlink(missing_ok=True)
                self.event(f"dropped {len(dropped)} image(s) JoyCaption could not caption after a retry: "
                           f"{listed(failed)}")
        return {"captioned": len(need) - len(dropped), "user_captions": len(spec["names"]) - len(need),
                "dropped": dropped, "folder": None}

    def split(self) -> dict[str, Any]:
        from pistachio_infra.dataset.split import split_names

        spec = self.plan["caption"]
        dropped = set(self.state["results"]["caption"]["dropped"])
        names = [n for n in spec["names"] if n not in dropped]
        train, held_out = split_names(names, spec["seed"], spec["eval_split"])
        images = Path(spec["images_dir"])
        for folder, chosen in ((Path(spec["train_dir"]), train), (Path(spec["eval_dir"]), held_out)):
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.iterdir():  # keep DiffusionPipe's cache/ (it checks fingerprints itself)
                if old.is_file():
                    old.unlink()
            for name in chosen:
                for file in (name, f"{Path(name).stem}.txt"):
                    shutil.copyfile(images / file, folder / file)
        self.event(f"split: {len(train)} train / {len(held_out)} eval images")
        return {"train": train, "eval": held_out}

    # --- train ------------------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        from pistachio_infra.pipeline.trainlog import Progress

        spec = self.plan["train"]
        output = Path(spec["output_dir"])
        output.mkdir(parents=True, exist_ok=True)
        run = self.state.get("run") or spec.get("run")
        resume = run if run and (output / run / "latest").is_file() else None
        if run and not resume:
            self.event(f"run {run} left no checkpoint on this pod: training starts again from step 0")
        before = {p.name for p in output.iterdir()} if resume is None else set()
        argv = [*spec["argv"], *(["--resume_from_checkpoint", resume] if resume else [])]
        log_dir = Path(self.plan["jobs_dir"]) / "train"
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "exit_code").unlink(missing_ok=True)
        log_path = log_dir / "log"
        self.state["launches"] = [*self.state["launches"], {"at": time.time(), "resume": resume}]
        self.state["total"] = spec["total"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=spec["cwd"], env={**os.environ, **spec["env"]}, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.event("training started" + (f" (resuming run {resume})" if resume else ""))
        pause("train-launched")
        progress = Progress(total=spec["total"])
        poll = float(self.plan.get("poll_s", 1.0))
        offset = 0
        run = resume
        while True:
            code = proc.poll()
            with open(log_path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            offset += len(data)
            if data:
                progress.feed(data.decode("utf-8", "replace"))
            if run is None:
                new = sorted({p.name for p in output.iterdir()} - before)
                if new:
                    run = new[-1]
            self.state.update(run=run, step=progress.step, total=max(progress.total, progress.step),
                              loss=progress.loss, epoch=progress.epoch)
            self.save()
            if code is not None and not data:
                break
            time.sleep(poll)
        (log_dir / "exit_code").write_text(f"{code}\n")
        if code != 0 or not progress.complete:
            tail = " | ".join(line for line in progress.tail[-6:] if line.strip())
            raise RuntimeError(f"DiffusionPipe exited with {code}: {tail}")
        if run is None:
            raise RuntimeError("DiffusionPipe created no run folder")
        saved = sorted(p.parent.name for p in (output / run).glob(f"*/{LORA_FILE}")
                       if CHECKPOINT_DIR.match(p.parent.name))
        self.event(f"training complete: {progress.step} steps, {len(saved)} LoRA checkpoints")
        return {"run": run, "steps": progress.step, "saved": saved, "wandb_url": progress.wandb_url,
                "resumed_at": progress.resumed_at}

    # --- select -----------------------------------------------------------------------------------------------

    def select(self) -> dict[str, Any]:
        from pistachio_infra.selection.choose import select_checkpoint

        trained = self.state["results"]["train"]
        sel = select_checkpoint(Path(self.plan["train"]["output_dir"]) / trained["run"],
                                eval_name=self.plan["eval_name"], saved_folders=list(trained["saved"]))
        self.event(f"{sel.verdict}: {sel.message}")
        return {"step": sel.step, "checkpoint": sel.checkpoint_name, "verdict": sel.verdict,
                "eval_loss": sel.eval_loss, "message": sel.message, "warnings": list(sel.warnings)}

    # --- publish ----------------------------------------------------------------------------------------------

    def publish(self) -> dict[str, Any]:
        from pistachio_infra.pipeline.publish import CardFacts, bundle, model_card, publish

        spec = self.plan["publish"]
        trained, chosen = self.state["results"]["train"], self.state["results"]["select"]
        folder = Path(self.plan["train"]["output_dir"]) / trained["run"] / chosen["checkpoint"]
        staging = Path(spec["staging"])
        shutil.rmtree(staging, ignore_errors=True)
        report = staging.with_name(staging.name + "-report")
        shutil.rmtree(report, ignore_errors=True)
        (report / "captions").mkdir(parents=True)
        for source in spec["caption_dirs"]:
            for txt in Path(source).glob("*.txt"):
                shutil.copyfile(txt, report / "captions" / txt.name)
        (report / "events").mkdir()  # the loss data: the client's report and plot read them after a pull
        for events in (folder.parent).glob("events.out.tfevents*"):
            shutil.copyfile(events, report / "events" / events.name)
        (report / "configs").mkdir()
        for conf in Path(spec["config_dir"]).glob("*.toml"):
            shutil.copyfile(conf, report / "configs" / conf.name)
        result = {"job": self.plan["job"], "job_id": self.plan["job_id"], "stamp": self.plan["stamp"],
                  "campaign": self.plan.get("campaign"),
                  **{k: self.state["results"][k] for k in ("caption", "split") if k in self.state["results"]},
                  "train": trained, "select": chosen, "launches": self.state["launches"]}
        (report / RESULT_FILE).write_text(json.dumps(result, indent=1))
        facts = CardFacts(**{**spec["card"], "settings": tuple(tuple(s) for s in spec["card"]["settings"])},
                          step=chosen["step"], checkpoint=chosen["checkpoint"], verdict=chosen["verdict"],
                          why=chosen["message"], eval_loss=chosen["eval_loss"], loss_plot=None)
        out = bundle(staging, lora=folder / LORA_FILE, adapter_config=folder / CONFIG_FILE, report_folder=report,
                     card=model_card(facts))
        done: dict[str, Any] = {"repo": None, "commit": None, "volume": None}
        if spec.get("volume_dir"):
            target = Path(spec["volume_dir"])
            shutil.copytree(out, target, dirs_exist_ok=True)
            done["volume"] = str(target)
            self.event(f"copied the result to the network volume: {target}")
        if spec.get("repo_id"):
            token = os.environ.get("HF_TOKEN", "")
            if not token:
                raise RuntimeError("HF_TOKEN is not in the supervisor's environment")
            done["commit"] = publish(out, spec["repo_id"], token=token, endpoint=spec.get("endpoint"),
                                     message=f"{self.plan['job']}: step {chosen['step']} ({chosen['verdict']})")
            done["repo"] = spec["repo_id"]
            self.event(f"published {spec['repo_id']} (private, commit {done['commit'][:10]})")
        return done


def pause(point: str) -> None:
    """PISTACHIO_PAUSE_AT (pipeline/stages.py), on the pod: hold at `point` until the file exists (tests)."""
    raw = os.environ.get("PISTACHIO_PAUSE_AT", "")
    name, _, until = raw.partition(":")
    if name != point or not until.startswith("@"):
        return
    give_up = time.monotonic() + 600
    while not Path(until[1:]).exists() and time.monotonic() < give_up:
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(args[0]).read_text())
    return Supervisor(plan).run()


if __name__ == "__main__":
    sys.exit(main())
