"""ComfyUI pods (`up --role comfyui`): ComfyUI at its pinned commit on a rented pod, the workflow's node packs and
models installed, the project's harvested LoRAs in models/loras, ComfyUI running as the pod's "comfyui" job.

    loras = harvested_loras(project, base_dir)            before renting: which LoRAs to copy
    plan = precheck(workflow, loras, cloud)               before renting: refuses what cannot be resolved
    result = prepare(session, workflow=..., loras=...)    on the pod: bootstrap, LoRAs, install, start, URL

The pod is an ordinary `up` pod: pod_session's teardown, the watchdog's max runtime, `down` and `reap` apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PistachioError
from .target import PodTarget

COMFY_PORT = 8188
ROLE = "comfyui"
LORA_SUFFIX = ".safetensors"

Say = Callable[[str], None]


@dataclass
class ComfyPod:
    url: str
    comfy_dir: str
    loras: list[str] = field(default_factory=list)  # file names copied into models/loras
    packs_installed: int = 0
    models_downloaded: int = 0
    downloaded_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # bootstrap_s, loras_s, install_s, start_s, url_s


# --- before renting --------------------------------------------------------------------------------------------------


def harvested_loras(project: Any | None, base_dir: Path) -> list[Path]:
    """The project's harvested LoRAs: the local comfyui_loras_dir (where `train` installs them) and every
    runs/<job>/<stamp>/lora/ folder under `base_dir`. One file per name, the newest wins."""
    found: list[Path] = []
    target = project.project.comfyui_loras_dir if project is not None else None
    if target and "://" not in target and Path(target).is_dir():
        found += Path(target).glob(f"*{LORA_SUFFIX}")
    found += Path(base_dir).glob(f"runs/*/*/lora/*{LORA_SUFFIX}")
    newest: dict[str, Path] = {}
    for path in found:
        if path.is_file() and not path.name.startswith("."):
            kept = newest.get(path.name)
            if kept is None or path.stat().st_mtime > kept.stat().st_mtime:
                newest[path.name] = path
    return [newest[name] for name in sorted(newest)]


class _FreshComfyUI:
    """What a new ComfyUI pod will hold before the workflow is installed: the checkout and the LoRAs we copy."""

    def __init__(self, loras: list[Path]) -> None:
        self.comfy_dir = "ComfyUI"
        self.label = "a new ComfyUI pod"
        self.loras = loras

    def inventory(self) -> dict[str, Any]:
        return {
            "comfy_dir": self.comfy_dir,
            "exists": True,
            "main_py": True,
            "custom_nodes": [],
            "models": {f"loras/{p.name}": p.stat().st_size for p in self.loras},
        }


def precheck(workflow: str, loras: list[Path], cloud: Any, *, yes: bool = False) -> Any:
    """The workflow's plan against a fresh ComfyUI pod, or a ConfigError naming what nobody provides (before
    anything costs money). Ambiguous hub files: the best-ranked one with `yes`, else refused."""
    from .resolve import resolve_workflow

    plan = resolve_workflow(
        workflow,
        _FreshComfyUI(loras),
        hf_endpoint=cloud.hf_endpoint,
        hf_token=cloud.hf_token,
        choose=(lambda _ref, candidates: candidates[0]) if yes else (lambda _ref, _candidates: None),
        auto=yes,
    )
    if not plan.complete:
        raise ConfigError(
            f"{workflow} cannot be fully resolved: {', '.join(_problems(plan))}",
            f"see `pistachio-infra comfy resolve {workflow} --comfy-dir .` (choose with --choose or --best, set "
            "HF_TOKEN for gated models), or start without --workflow",
        )
    return plan


def _problems(plan: Any) -> list[str]:
    out = [f"node type {t} (no pack provides it)" for t in plan.nodes.unresolved]
    out += [f"node type {t} (several packs: choose one)" for t in plan.nodes.ambiguous]
    out += [f"subgraph {s} (not defined)" for s in plan.nodes.missing_subgraphs]
    for m in plan.models:
        if m.status in ("unresolved", "ambiguous", "gated"):
            out.append(f"model {m.res.ref.name} ({m.status})")
    return out or ["incomplete plan"]


# --- on the pod ------------------------------------------------------------------------------------------------------


def prepare(
    session: Any,
    *,
    workflow: str | None,
    loras: list[Path],
    yes: bool = False,
    say: Say | None = None,
    bootstrap_output: Callable[[str], None] | None = None,
    url_timeout_s: float = 300.0,
) -> ComfyPod:
    """Make `session`'s pod a running ComfyUI: bootstrap (role comfyui), LoRAs, the workflow's packs and models,
    ComfyUI started as the "comfyui" job, its URL answering. Idempotent: a rerun on the same workspace (a network
    volume) skips what is there."""
    from ..catalog import sources
    from ..pods.bootstrap import bootstrap
    from .target import start_comfyui

    say = say or (lambda _msg: None)
    remote, cloud = session.remote, session.cloud
    timings: dict[str, float] = {}
    comfy_dir = f"{str(remote.workspace).rstrip('/')}/{sources().repos['ComfyUI'].dest}"

    t = time.monotonic()
    say(f"{session.name}: installing ComfyUI")
    bootstrap(remote, cloud, models=(), role=ROLE, store=session.store, pod_name=session.name,
              on_output=bootstrap_output)
    timings["bootstrap_s"] = time.monotonic() - t

    t = time.monotonic()
    copied = copy_loras(remote, loras, f"{comfy_dir}/models/loras")
    if copied:
        say(f"{session.name}: {len(copied)} harvested LoRA(s) in models/loras: {', '.join(copied)}")
    timings["loras_s"] = time.monotonic() - t

    result = ComfyPod(url="", comfy_dir=comfy_dir, loras=copied)
    t = time.monotonic()
    if workflow:
        _install_workflow(result, remote, cloud, workflow, yes=yes, say=say)
    timings["install_s"] = time.monotonic() - t

    t = time.monotonic()
    say(f"{session.name}: starting ComfyUI")
    start_comfyui(remote, comfy_dir, port=COMFY_PORT, timeout=url_timeout_s)
    timings["start_s"] = time.monotonic() - t

    t = time.monotonic()
    result.url = wait_url(cloud, session.ready.pod, session.lifecycle.api, timeout=url_timeout_s)
    timings["url_s"] = time.monotonic() - t
    result.timings = timings
    return result


def copy_loras(remote: Any, loras: list[Path], dest_dir: str) -> list[str]:
    """Copy the LoRAs into `dest_dir` on the pod (checksummed; files already there with the same sha256 are
    skipped). Returns the file names."""
    import os
    import shutil
    import tempfile

    if not loras:
        return []
    with tempfile.TemporaryDirectory(prefix="pistachio-loras-") as tmp:
        for path in loras:
            staged = Path(tmp) / path.name
            try:
                os.link(path, staged)
            except OSError:
                shutil.copyfile(path, staged)
        remote.put_tree(Path(tmp), dest_dir, progress=False)
    return [p.name for p in loras]


class _NotRunningYet(PodTarget):
    """The pod's ComfyUI before its first start: new packs need no restart (it starts after the install)."""

    def restart(self) -> str:
        return ""


def _install_workflow(result: ComfyPod, remote: Any, cloud: Any, workflow: str, *, yes: bool, say: Say) -> None:
    from .install import install
    from .resolve import resolve_workflow

    target = _NotRunningYet(remote, result.comfy_dir, env={"HF_TOKEN": cloud.hf_token or ""})
    plan = resolve_workflow(
        workflow,
        target,
        hf_endpoint=cloud.hf_endpoint,
        hf_token=cloud.hf_token,
        choose=(lambda _ref, candidates: candidates[0]) if yes else (lambda _ref, _candidates: None),
        auto=yes,
    )
    if not plan.complete:
        raise PistachioError(
            f"{workflow} cannot be fully resolved on the pod: {', '.join(_problems(plan))}",
            f"see `pistachio-infra comfy resolve {workflow} --pod POD`",
        )
    say(f"workflow: {len(plan.to_install)} node pack(s) to install, {len(plan.to_download)} model(s) to download")
    if plan.nothing_to_do:
        return
    report = install(plan, target, hub_endpoint=cloud.hf_endpoint, show_progress=False, on_line=say)
    if report.failures or report.exit_code != 0:
        what = "; ".join(f"{f.get('item')}: {f.get('message')}" for f in report.failures) or f"exit {report.exit_code}"
        raise PistachioError(
            f"installing {workflow}'s dependencies failed: {what}",
            f"see `pistachio-infra logs POD --job comfy-install`; `comfy resolve {workflow} --pod POD --install` "
            "retries on the same pod",
        )
    result.packs_installed = sum(1 for p in report.packs if p.get("status") == "installed")
    result.models_downloaded = sum(1 for m in report.models if m.get("status") == "downloaded")
    result.downloaded_bytes = report.downloaded_bytes


def wait_url(cloud: Any, pod: Any, api: Any, *, timeout: float = 300.0, poll_s: float = 1.0) -> str:
    """The pod's ComfyUI URL once it answers /system_stats from here (RunPod's proxy needs a while after the
    process listens). The pod is re-read while its http port has no public mapping yet."""
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        url = cloud.http_url(pod.id, COMFY_PORT, pod.http_ports)
        if url is not None:
            try:
                response = httpx.get(f"{url}/system_stats", timeout=10)
                if response.status_code == 200 and "system" in response.json():
                    return url
                last = f"HTTP {response.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        else:
            last = f"port {COMFY_PORT}/http has no public mapping yet"
            pod = api.get_pod(pod.id) or pod
        if time.monotonic() >= deadline:
            raise PistachioError(
                f"ComfyUI runs on pod {pod.id} but {url or 'its URL'} did not answer within {timeout:.0f}s ({last})",
                "look at `pistachio-infra logs POD --job comfyui`; the pod keeps running until `down` or its "
                "watchdog",
            )
        time.sleep(poll_s)
