"""The plan for one workflow against one ComfyUI installation: what to install, what is there, what nobody provides.

plan = make_plan(workflow, nodes, models, inventory)
plan.packs / plan.models      each with a status: install|download, present, or a reason it cannot be done
plan.download_bytes           total of what `--install` would download (sizes the sources report)
plan.agent_plan(endpoint)     the JSON the target-side agent applies
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import FOLDER_ALIASES, ModelResolution, hub_url
from .nodes import NodeResolution, PackNeed, normalize_url, repo_name
from .workflow import Workflow


@dataclass
class PackStep:
    need: PackNeed
    status: str  # install, present, disabled
    dest: str  # custom_nodes/<folder>
    note: str = ""


@dataclass
class ModelStep:
    res: ModelResolution
    status: str  # download, present, unresolved, ambiguous, gated
    dest: str | None  # models/<folder>/<name>
    note: str = ""


@dataclass
class Plan:
    workflow: str
    target: str
    database: str
    nodes: NodeResolution
    packs: list[PackStep]
    models: list[ModelStep]
    warnings: list[str] = field(default_factory=list)

    @property
    def to_install(self) -> list[PackStep]:
        return [p for p in self.packs if p.status == "install"]

    @property
    def to_download(self) -> list[ModelStep]:
        return [m for m in self.models if m.status == "download"]

    @property
    def download_bytes(self) -> int:
        return sum(m.res.source.size or 0 for m in self.to_download if m.res.source)

    @property
    def unknown_sizes(self) -> int:
        return sum(1 for m in self.to_download if m.res.source and m.res.source.size is None)

    @property
    def complete(self) -> bool:
        """Nothing unresolved: after applying it, the workflow has every node and model it names."""
        return (
            not self.nodes.unresolved
            and not self.nodes.ambiguous
            and not self.nodes.missing_subgraphs
            and all(m.status in ("download", "present") for m in self.models)
        )

    @property
    def nothing_to_do(self) -> bool:
        return not self.to_install and not self.to_download

    def agent_plan(self, comfy_dir: str, hub_endpoint: str, python: str = "python3") -> dict[str, Any]:
        """What agent.py applies; hub files are fetched from `hub_endpoint` (huggingface.co or a stand-in)."""
        models = []
        for step in self.to_download:
            src = step.res.source
            assert src is not None and step.dest is not None
            if src.hub is not None:
                url = hub_url(src.hub).replace("https://huggingface.co", hub_endpoint.rstrip("/"), 1)
            else:
                url = src.url
            models.append(
                {
                    "url": url,
                    "dest": step.dest,
                    "size": None if src.size_approx else src.size,
                    "sha256": src.sha256,
                    "auth": src.hub is not None,
                }
            )
        packs = [
            {"url": p.need.url, "dest": p.dest, "commit": p.need.commit, "pip": p.need.pip} for p in self.to_install
        ]
        return {"comfy_dir": str(comfy_dir), "python": python, "packs": packs, "models": models}

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "target": self.target,
            "database": self.database,
            "core_nodes": self.nodes.core,
            "packs": [
                {
                    "title": p.need.title,
                    "url": p.need.url,
                    "commit": p.need.commit,
                    "types": p.need.types,
                    "how": p.need.how,
                    "status": p.status,
                    "dest": p.dest,
                    "note": p.note,
                }
                for p in self.packs
            ],
            "ambiguous_nodes": self.nodes.ambiguous,
            "unresolved_nodes": self.nodes.unresolved,
            "missing_subgraphs": self.nodes.missing_subgraphs,
            "models": [
                {
                    "name": m.res.ref.name,
                    "folder": m.res.ref.folder,
                    "status": m.status,
                    "dest": m.dest,
                    "source": m.res.source.url if m.res.source else None,
                    "how": m.res.source.how if m.res.source else None,
                    "size": m.res.source.size if m.res.source else None,
                    "sha256": m.res.source.sha256 if m.res.source else None,
                    "gated": bool(m.res.source and m.res.source.gated),
                    "candidates": [{"repo": c.repo, "path": c.path, "size": c.size} for c in m.res.candidates],
                    "note": m.note,
                    "used_by": m.res.ref.used_by,
                }
                for m in self.models
            ],
            "download_bytes": self.download_bytes,
            "complete": self.complete,
            "warnings": self.warnings,
        }


def _pack_step(need: PackNeed, installed: list[dict[str, Any]]) -> PackStep:
    name = repo_name(need.url)
    for pack in installed:
        folder = pack["dir"]
        same_url = pack.get("url") and normalize_url(pack["url"]) == normalize_url(need.url)
        same_name = folder.lower().removesuffix(".disabled") == name.lower()
        if same_url or same_name:
            if pack.get("disabled"):
                return PackStep(
                    need,
                    "disabled",
                    f"custom_nodes/{folder}",
                    f"installed but disabled: rename custom_nodes/{folder} without .disabled",
                )
            note = ""
            if need.commit and pack.get("commit") and pack["commit"] != need.commit:
                note = f"at {pack['commit'][:10]}, the workflow was saved with {need.commit[:10]}"
            return PackStep(need, "present", f"custom_nodes/{folder}", note)
    return PackStep(need, "install", f"custom_nodes/{name}")


def _model_step(res: ModelResolution, files: dict[str, int]) -> ModelStep:
    ref = res.ref
    if ref.folder is None:
        hits = [path for path in files if path.rsplit("/", 1)[-1] == ref.basename]
        if hits:
            return ModelStep(res, "present", f"models/{hits[0]}", "found by file name (folder unknown)")
        return ModelStep(res, "unresolved", None, res.problem)
    wanted_size = res.source.size if res.source and not res.source.size_approx else None
    for folder in FOLDER_ALIASES.get(ref.folder, (ref.folder,)):
        rel = f"{folder}/{ref.name}"
        if rel in files:
            if wanted_size is not None and files[rel] != wanted_size:
                return ModelStep(
                    res,
                    "download",
                    f"models/{rel}",
                    f"present with {files[rel]} bytes, the source has {wanted_size}: downloading again",
                )
            return ModelStep(res, "present", f"models/{rel}")
    dest = f"models/{ref.folder}/{ref.name}"
    if res.source is None:
        status = "ambiguous" if res.candidates else "unresolved"
        return ModelStep(res, status, dest, res.problem)
    if res.source.gated:
        return ModelStep(res, "gated", dest, res.source.note)
    elsewhere = [path for path in files if path.rsplit("/", 1)[-1] == ref.basename]
    note = f"a file of that name is at models/{elsewhere[0]}, not where the workflow looks" if elsewhere else ""
    return ModelStep(res, "download", dest, note or res.source.note)


def make_plan(
    wf: Workflow,
    nodes: NodeResolution,
    models: list[ModelResolution],
    inventory: dict[str, Any],
    *,
    target: str,
    database: str,
) -> Plan:
    packs = [_pack_step(need, inventory.get("custom_nodes", [])) for need in nodes.packs]
    files = inventory.get("models", {})
    steps = [_model_step(res, files) for res in models]
    warnings = []
    if not inventory.get("exists", True):
        warnings.append(f"{inventory.get('comfy_dir')} does not exist yet: everything counts as missing")
    return Plan(
        workflow=wf.source, target=target, database=database, nodes=nodes, packs=packs, models=steps, warnings=warnings
    )
