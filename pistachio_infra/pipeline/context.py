"""What every stage of one training run sees: the job, its state records, the pod session and where files go."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config.project import Job, Project
from ..dataset.scan import DatasetReport
from ..endpoints import Cloud
from ..pods.layout import JobLayout, WorkspaceLayout
from ..state import Store
from .results import CaptionDone, ProvisionDone
from .stages import Stages


@dataclass(frozen=True)
class PodRequest:
    """What the pod of the run is rented with (from the command line)."""

    max_hours: float = 12.0  # the pod's watchdog terminates it then, whatever happens
    volume: bool | None = None  # mount the env stack's network volume (None: when there is one)
    network_volume: tuple[str, str] | None = None  # (volume id, data center): this one instead of the env stack's


@dataclass
class RunContext:
    job: Job
    project: Project | None
    job_id: int
    store: Store
    cloud: Cloud
    console: Any  # rich Console
    stages: Stages
    dataset: DatasetReport
    run_folder: Path  # user-visible: <project>/runs/<job>/<timestamp>/ (captions, report, LoRA copy)
    work_dir: Path  # state_dir()/work/<job>-<id>/: event-file mirror, checkpoint sync
    started: datetime
    gpu_classes: tuple[str, ...]
    recaption: bool = False
    preflight_s: float = 0.0
    pod_request: PodRequest = field(default_factory=PodRequest)
    pod_hold: ExitStack | None = None  # holds the pod session from provision to teardown
    session: Any = None  # teardown.PodSession while a pod is held
    notes: list[str] = field(default_factory=list)
    saved_logs: list[Path] = field(default_factory=list)  # the pod's logs copied into run_folder/logs (podlogs.py)
    wandb_url: str | None = None
    project_lock: Any = None  # the project's pistachio.lock (lockfile.Lock): pods are bootstrapped exactly from it
    allow_drift: bool = False  # train even when the pod cannot be made exactly as that lock says
    stuck: Any = None  # session.TerminateFailed: a pod that would not terminate after the work was done
    detach: bool = False  # `train --detach`: return once the pod's supervisor runs
    verify_plan: Any = None  # verify.plan.VerifyPlan: where the samples render (decided before renting)
    _layout: WorkspaceLayout | None = None

    # --- output ---------------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        self.console.print(f"  {message}", highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.console.print(f"  [yellow]note:[/yellow] {message}", highlight=False, soft_wrap=True)

    # --- the pod ----------------------------------------------------------------------------------------

    @property
    def remote(self) -> Any:
        if self.session is None:
            raise RuntimeError("no pod session")
        return self.session.remote

    @property
    def pod_name(self) -> str | None:
        return self.session.name if self.session is not None else None

    @property
    def layout(self) -> WorkspaceLayout:
        if self._layout is None or str(self._layout.root) != str(self.remote.workspace):
            self._layout = WorkspaceLayout.at(self.remote.workspace)
        return self._layout

    @property
    def job_layout(self) -> JobLayout:
        return self.layout.job(self.job.name)

    @property
    def gpu_class(self) -> str:
        """The class actually rented (fallback may have changed it)."""
        if self.session is not None and self.session.ready.offer is not None:
            return self.session.ready.offer.gpu_class
        rec = self.stages.get(ProvisionDone)
        return (rec.gpu_class if rec else None) or self.gpu_classes[0]

    # --- the dataset after captioning -------------------------------------------------------------------

    @property
    def image_names(self) -> list[str]:
        """Images that are trained on: the usable ones minus any the captioner could not caption (dropped)."""
        rec = self.stages.get(CaptionDone)
        dropped = set(rec.dropped if rec else ())
        return [i.name for i in self.dataset.usable if i.name not in dropped]

    @property
    def captions_dir(self) -> Path:
        return self.run_folder / "captions"

    @property
    def mirror_dir(self) -> Path:
        """Local mirror of the training run dir: event files (always), checkpoints (when synced)."""
        return self.work_dir / "run"
