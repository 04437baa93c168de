"""Where the environment stack keeps its state, and its outputs read without Pulumi.

Training jobs call `outputs()` to find the model-cache volume. It reads the stack's checkpoint in the local file
backend directly (plain JSON), so it needs neither the Pulumi CLI nor the pulumi package.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = "pistachio-env"
CONFIG_NAMESPACE = "pistachio"
RESOURCE_TYPE_PREFIX = "pulumi-python:dynamic/runpod:"


@dataclass(frozen=True)
class EnvOutputs:
    stack: str
    volume_id: str
    data_center_id: str
    volume_gb: int | None = None
    template_id: str | None = None
    image: str | None = None
    comfyui_pod_id: str | None = None
    comfyui_ssh_host: str | None = None
    comfyui_ssh_port: int | None = None
    comfyui_ssh_user: str = "root"

    @property
    def comfyui_ssh(self) -> str | None:
        """`host:port` of the ComfyUI pod's SSH, when it has one."""
        if self.comfyui_ssh_host and self.comfyui_ssh_port:
            return f"{self.comfyui_ssh_host}:{self.comfyui_ssh_port}"
        return None


def pulumi_dir() -> Path:
    from ..paths import state_dir

    return state_dir() / "pulumi"


def backend_dir() -> Path:
    """The `file://` backend: stacks' checkpoints live under `<this>/.pulumi/stacks/<project>/<stack>.json`."""
    return pulumi_dir() / "backend"


STACK_OF_CLOUD = {"runpod": "main", "sandbox": "sandbox"}


def default_stack() -> str:
    """One stack per cloud, so sandbox resources never share state with real ones."""
    from ..endpoints import cloud_choice

    return STACK_OF_CLOUD[cloud_choice().name]


def _checkpoint(stack: str) -> dict[str, Any] | None:
    stacks = backend_dir() / ".pulumi" / "stacks"
    for path in (stacks / PROJECT / f"{stack}.json", stacks / f"{stack}.json"):
        if path.is_file():
            return json.loads(path.read_text())
        gz = path.with_name(path.name + ".gz")
        if gz.is_file():
            return json.loads(gzip.decompress(gz.read_bytes()))
    return None


def _resources(stack: str) -> list[dict[str, Any]]:
    data = _checkpoint(stack) or {}
    latest = (data.get("checkpoint") or {}).get("latest") or {}
    return list(latest.get("resources") or [])


def raw_outputs(stack: str | None = None) -> dict[str, Any] | None:
    """The stack's exported outputs as Pulumi stored them, or None if the stack has never been deployed."""
    for resource in _resources(stack or default_stack()):
        if resource.get("type") == "pulumi:pulumi:Stack":
            return dict(resource.get("outputs") or {})
    return None


def _live_ids(stack: str) -> set[str]:
    """Ids of the RunPod resources in the state. A refresh drops what was deleted behind Pulumi's back but keeps
    the last exported outputs, so outputs are only trusted for ids still in the state."""
    return {str(r["id"]) for r in _resources(stack) if str(r.get("type", "")).startswith(RESOURCE_TYPE_PREFIX)
            and r.get("id")}


def outputs(stack: str | None = None) -> EnvOutputs | None:
    """The environment stack's outputs when it is deployed (volume id + data center, template, ComfyUI SSH), else
    None. Reads the local file backend; no Pulumi CLI needed."""
    stack = stack or default_stack()
    raw = raw_outputs(stack)
    live = _live_ids(stack)
    if not raw or str(raw.get("volume_id")) not in live or not raw.get("data_center_id"):
        return None
    if str(raw.get("comfyui_pod_id")) not in live:
        raw = {k: v for k, v in raw.items() if not k.startswith("comfyui_")}
    if str(raw.get("template_id")) not in live:
        raw.pop("template_id", None)
    port = raw.get("comfyui_ssh_port")
    size = raw.get("volume_gb")
    return EnvOutputs(
        stack=stack,
        volume_id=str(raw["volume_id"]),
        data_center_id=str(raw["data_center_id"]),
        volume_gb=int(size) if isinstance(size, int | float) else None,
        template_id=raw.get("template_id") or None,
        image=raw.get("image") or None,
        comfyui_pod_id=raw.get("comfyui_pod_id") or None,
        comfyui_ssh_host=raw.get("comfyui_ssh_host") or None,
        comfyui_ssh_port=int(port) if isinstance(port, int | float) else None,
        comfyui_ssh_user=raw.get("comfyui_ssh_user") or "root",
    )


def resource_count(stack: str | None = None) -> int:
    """How many resources (besides the stack and provider entries) the stack's state holds."""
    return sum(
        1
        for r in _resources(stack or default_stack())
        if r.get("type") != "pulumi:pulumi:Stack" and not str(r.get("type", "")).startswith("pulumi:providers:")
    )
