"""Make a pod ready to caption and train: prebuilt wheels the image lacks (flash-attn), pinned DiffusionPipe and
joy-caption-batch checkouts, their Python dependencies, and the base-model files, each step skipped when already
done (templates/bootstrap.sh.j2).

The script runs as a detached job on the pod, so an SSH drop during a long download does not stop it; the client
follows its log (re-attaching after drops) and records each step's timing. HF_TOKEN reaches the job's environment
over the SSH channel only. Model files land in the workspace, which is the network volume when the pod has one:
a second pod in that data center finds them there and skips the download.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..catalog import base_model, sources
from ..endpoints import Cloud
from ..errors import PistachioError
from ..state import Store

DEFAULT_MODELS = ("wan21-t2v-14b", "joycaption-alpha-two")
JOB_NAME = "bootstrap"
# joy-caption-batch pins transformers==4.43.3 and huggingface_hub==0.24.3, which DiffusionPipe's requirements
# contradict: it gets its own venv layered over the image's Python (torch stays shared).
VENV_REPOS = {"joy-caption-batch": ".venv"}


class BootstrapError(PistachioError):
    pass


@dataclass(frozen=True)
class RepoStep:
    name: str
    url: str
    commit: str
    dest: str
    submodules: bool
    venv: str | None
    requirements: str = ""  # the pip requirements file on the pod ("" = the checkout's requirements.txt)
    deps_key: str = ""  # what the "deps installed" markers record ("" = the commit)

    @property
    def requirements_file(self) -> str:
        return self.requirements or f"{self.dest}/requirements.txt"

    @property
    def deps_marker(self) -> str:
        return self.deps_key or self.commit


@dataclass(frozen=True)
class WheelStep:
    name: str  # the distribution, e.g. flash-attn
    version: str
    url: str
    sha256: str
    import_name: str

    @property
    def requirement(self) -> str:
        """A pip requirement that installs exactly this file: `--require-hashes` refuses other bytes."""
        return f"{self.name} @ {self.url} --hash=sha256:{self.sha256}"


def wheel_steps(cloud: Cloud, role: str = "train") -> list[WheelStep]:
    """Pinned prebuilt wheels from data/sources.toml (flash-attn for DiffusionPipe's Wan attention); the cloud may
    serve them elsewhere (the sandbox's package index). A lock's pins arrive as the cloud's overrides."""
    steps = []
    for name, wheel in sources().wheels_for_role(role).items():
        pin = cloud.wheel_overrides.get(name)
        steps.append(WheelStep(name=name, version=wheel.version, url=pin.url if pin else wheel.url,
                               sha256=pin.sha256 if pin else wheel.sha256, import_name=wheel.import_name))
    return steps


@dataclass
class BootstrapReport:
    steps: list[dict[str, Any]] = field(default_factory=list)  # {"step", "status": done|skipped, "seconds"}
    models: list[dict[str, Any]] = field(default_factory=list)  # {"item", "status", "seconds", "bytes"?}
    seconds: float = 0.0

    @property
    def did_nothing(self) -> bool:
        return bool(self.steps) and all(s["status"] == "skipped" for s in self.steps)

    def seconds_of(self, step: str) -> float:
        return sum(s["seconds"] for s in self.steps if s["step"] == step)


def joycaption_python(workspace: str) -> str:
    """The interpreter that runs joy-caption-batch on the pod (its own venv; see VENV_REPOS)."""
    dest = sources().repos["joy-caption-batch"].dest
    return f"{workspace.rstrip('/')}/{dest}/{VENV_REPOS['joy-caption-batch']}/bin/python"


def repo_steps(
    cloud: Cloud, workspace: str, frozen: Mapping[str, str] | None = None, role: str = "train"
) -> list[RepoStep]:
    """Pinned repos from data/sources.toml; the cloud may serve them elsewhere (the sandbox's stand-ins).
    `frozen` (repo name → requirements text, from pistachio.lock) replaces a repo's requirements.txt."""
    steps = []
    for name, repo in sources().for_role(role).items():
        pin = cloud.repo_overrides.get(name)
        dest = f"{workspace.rstrip('/')}/{repo.dest}"
        commit = pin.commit if pin else repo.commit
        requirements = deps_key = ""
        if frozen is not None and name in frozen:
            requirements = frozen_path(workspace, name)
            deps_key = f"{commit}-{hashlib.sha256(frozen[name].encode()).hexdigest()[:16]}"
        steps.append(
            RepoStep(
                name=name,
                url=pin.url if pin else repo.url,
                commit=commit,
                dest=dest,
                submodules=repo.submodules,
                venv=f"{dest}/{VENV_REPOS[name]}" if name in VENV_REPOS else None,
                requirements=requirements,
                deps_key=deps_key,
            )
        )
    return steps


def frozen_path(workspace: str, repo: str) -> str:
    return f"{workspace.rstrip('/')}/.pistachio/bootstrap/frozen-{repo}.txt"


def model_items(workspace: str, models: Sequence[str]) -> list[dict[str, Any]]:
    """What fetch_models.py downloads: single files to their data/models.toml `dest`, or whole snapshots into an
    HF cache (`dest` is then HF_HOME; the hub cache is its hub/ folder)."""
    items: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for name in models:
        manifest = base_model(name)
        for f in manifest.files:
            if manifest.hf_snapshot:
                if (f.repo_id, f.revision) in seen:
                    continue
                seen.add((f.repo_id, f.revision))
                cache = f"{workspace.rstrip('/')}/{f.dest}/hub"
                items.append({"kind": "snapshot", "repo_id": f.repo_id, "revision": f.revision, "cache_dir": cache})
            else:
                items.append(
                    {"kind": "file", "repo_id": f.repo_id, "revision": f.revision, "path": f.path, "dest": f.dest}
                )
    return items


def render_script(
    cloud: Cloud, workspace: str, models: Sequence[str], frozen: Mapping[str, str] | None = None, role: str = "train"
) -> dict[str, str]:
    """The files bootstrap writes on the pod (path → text): the script, the model list, the fetcher (and the frozen
    requirement sets, when given)."""
    from .scripts import render, template_text

    state = f"{workspace.rstrip('/')}/.pistachio/bootstrap"
    files: dict[str, str] = {}
    models_config = None
    fetch_script = f"{state}/fetch_models.py"
    items = model_items(workspace, models)
    if items:
        models_config = f"{state}/models.json"
        manifest = f"{workspace.rstrip('/')}/.pistachio/models-manifest.json"
        files[models_config] = json.dumps({"workspace": workspace, "manifest": manifest, "items": items}, indent=1)
        files[fetch_script] = template_text("fetch_models.py")
    files[f"{state}/requirements_met.py"] = template_text("requirements_met.py")
    for name, text in (frozen or {}).items():
        files[frozen_path(workspace, name)] = text
    files[f"{state}/bootstrap.sh"] = render(
        "bootstrap.sh.j2",
        workspace=workspace,
        state_dir=state,
        python="python3",
        repos=repo_steps(cloud, workspace, frozen, role),
        wheels=wheel_steps(cloud, role),
        models_config=models_config,
        fetch_script=fetch_script,
    )
    return files


def bootstrap(
    remote: Any,
    cloud: Cloud,
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    store: Store | None = None,
    job_id: int | None = None,
    pod_name: str | None = None,
    on_output: Callable[[str], None] | None = None,
    frozen: Mapping[str, str] | None = None,
    role: str = "train",
) -> BootstrapReport:
    """Run the bootstrap on the pod (re-attaching if one is already running there) and return its step timings.
    `frozen` (repo name → pinned requirements, see rebuild.py) is installed instead of the repo's requirements.txt.
    `role` picks the repos (data/sources.toml `roles`): "train" (DiffusionPipe, JoyCaption) or "comfyui"."""
    from .scripts import write_files

    t0 = time.monotonic()
    workspace = str(remote.workspace)
    files = render_script(cloud, workspace, models, frozen, role)
    script = next(p for p in files if p.endswith("/bootstrap.sh"))
    running = remote.job(JOB_NAME)
    if running is None or not running.running:
        write_files(remote, files)
    env = {"HF_ENDPOINT": cloud.hf_endpoint}
    if cloud.hf_token:
        env["HF_TOKEN"] = cloud.hf_token
    remote.start_detached(JOB_NAME, f"bash {_q(script)}", env=env, cwd=workspace)
    lines: list[str] = []
    pending = ""

    def collect(text: str) -> None:
        nonlocal pending
        pending += text
        *complete, pending = pending.split("\n")
        for line in complete:
            lines.append(line)
            if on_output is not None:
                on_output(line)

    exit_code = remote.follow(JOB_NAME, on_output=collect)
    if pending:
        collect("\n")
    report = _parse(lines)
    report.seconds = time.monotonic() - t0
    if store is not None:
        store.add_event(
            job_id,
            "bootstrap",
            {"pod": pod_name, "exit_code": exit_code, "seconds": round(report.seconds, 3), "steps": report.steps,
             "models": report.models},
        )
    if exit_code != 0:
        tail = " | ".join(line for line in lines[-8:] if line.strip())
        raise BootstrapError(
            f"bootstrap failed on pod {getattr(remote, 'pod_id', '?')} (exit {exit_code}): {tail}",
            "read the whole log with `pistachio-infra logs POD --job bootstrap`; rerunning skips the finished steps",
        )
    return report


def _parse(lines: list[str]) -> BootstrapReport:
    report = BootstrapReport()
    for line in lines:
        tag, _, payload = line.strip().partition(" ")
        try:
            if tag == "PISTACHIO-STEP":
                report.steps.append(json.loads(payload))
            elif tag == "PISTACHIO-MODEL":
                report.models.append(json.loads(payload))
        except json.JSONDecodeError:
            continue
    return report


def _q(value: str) -> str:
    import shlex

    return shlex.quote(value)


def workspace_path(workspace: str, *parts: str) -> str:
    return str(PurePosixPath(workspace, *parts))
