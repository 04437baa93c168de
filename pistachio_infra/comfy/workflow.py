"""Read a ComfyUI workflow in either of its two formats into one flat list of nodes.

UI format (what the editor saves, and what CivitAI pages offer): `{"nodes": [...], "links": [...], "groups": [...],
"definitions": {"subgraphs": [...]}, "extra": {"groupNodes": {...}}}`. A node whose `type` is the id of a subgraph
definition is an instance of that subgraph; definitions may hold nodes that are themselves subgraph instances and may
carry their own nested `definitions`. API (prompt) format: `{"<id>": {"class_type": ..., "inputs": {...}}}`, also
accepted wrapped as `{"prompt": {...}}`. A PNG saved by ComfyUI carries either in its `workflow` / `prompt` text chunk.

Every node keeps the JSON path it came from, so an error or a model reference can say exactly where it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PistachioError


class WorkflowError(PistachioError):
    """The file is not a ComfyUI workflow we can read."""


# Frontend-only helpers: the editor draws them, the server never sees them, no pack provides them.
VIRTUAL_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


@dataclass(frozen=True)
class WorkflowNode:
    id: str
    type: str
    path: str  # JSON path in the file, e.g. definitions.subgraphs[0].nodes[3]
    widgets: list[Any] | dict[str, Any] = field(default_factory=list)  # UI format: widgets_values
    inputs: dict[str, Any] = field(default_factory=dict)  # API format: literal inputs (links dropped)
    properties: dict[str, Any] = field(default_factory=dict)
    subgraph: str | None = None  # name of the subgraph definition holding this node
    mode: int = 0  # 0 active, 2 muted, 4 bypassed (UI format)

    @property
    def virtual(self) -> bool:
        return self.type in VIRTUAL_NODES


@dataclass
class Workflow:
    source: str
    format: str  # "ui" or "api"
    nodes: list[WorkflowNode]
    subgraphs: dict[str, str] = field(default_factory=dict)  # id -> name
    missing_subgraphs: dict[str, list[str]] = field(default_factory=dict)  # UUID-like type used but not defined

    def note_texts(self) -> list[str]:
        """Text of the Note / MarkdownNote nodes: authors put model download links there."""
        notes = [n for n in self.nodes if n.type in ("Note", "MarkdownNote") and isinstance(n.widgets, list)]
        return [v for n in notes for v in n.widgets if isinstance(v, str)]

    def node_types(self) -> set[str]:
        """Every real node type the workflow needs (subgraph instances and frontend-only nodes excluded)."""
        skip = self.subgraphs.keys() | self.missing_subgraphs.keys()
        return {n.type for n in self.nodes if not n.virtual and n.type not in skip}


def _looks_like_uuid(text: str) -> bool:
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(c in "0123456789abcdefABCDEF" for c in "".join(parts))


def _decode(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "fix the file there, or export the workflow again from ComfyUI (Workflow → Export)",
        ) from None


def _png_text(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as img:
        info = dict(img.info)
    for key in ("workflow", "prompt"):
        if isinstance(info.get(key), str):
            return info[key]
    raise WorkflowError(f"{path} has no ComfyUI workflow in it", "use the image ComfyUI saved, or its workflow .json")


def load_workflow(path: str | Path) -> Workflow:
    """Read a workflow file (.json, or a ComfyUI .png); raises WorkflowError naming where it is broken."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(f"workflow {path} does not exist", "give the path of a workflow .json file")
    raw = path.read_bytes()
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        text = _png_text(path)
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise WorkflowError(f"{path} is not UTF-8 text (byte {exc.start})", "give a workflow .json file") from None
    return parse_workflow(_decode(text, str(path)), str(path))


def parse_workflow(data: Any, source: str = "<workflow>") -> Workflow:
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return _parse_ui(data, source)
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "nodes" not in data:
        return _parse_api(data["prompt"], source, "prompt")
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return _parse_api(data, source, "")
    if isinstance(data, dict) and data and any(isinstance(v, dict) and "class_type" in v for v in data.values()):
        bad = next(k for k, v in data.items() if not (isinstance(v, dict) and "class_type" in v))
        raise WorkflowError(
            f"{source}: node {_json_path('', bad)} has no class_type (API format needs one per node)",
            "export the workflow again with Workflow → Export (API)",
        )
    kind = type(data).__name__
    raise WorkflowError(
        f"{source} is JSON but not a ComfyUI workflow (a {kind} with neither `nodes` nor API-format nodes)",
        "give a workflow saved by ComfyUI (Workflow → Export, or Export (API))",
    )


def _json_path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}[{json.dumps(key)}]" if prefix or not key.isidentifier() else key


def _parse_api(prompt: dict[str, Any], source: str, prefix: str) -> Workflow:
    nodes = []
    for node_id, body in prompt.items():
        where = _json_path(prefix, str(node_id))
        if not isinstance(body, dict) or not isinstance(body.get("class_type"), str) or not body["class_type"]:
            raise WorkflowError(f"{source}: node {where} has no class_type string", "fix or re-export the workflow")
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            raise WorkflowError(f"{source}: {where}.inputs is not an object", "fix or re-export the workflow")
        # [node_id, slot] pairs are links to other nodes, not values
        literal = {
            k: v for k, v in inputs.items() if not (isinstance(v, list) and len(v) == 2 and isinstance(v[1], int))
        }
        nodes.append(WorkflowNode(id=str(node_id), type=body["class_type"], path=where, inputs=literal))
    return Workflow(source=source, format="api", nodes=nodes)


def _parse_ui(data: dict[str, Any], source: str) -> Workflow:
    wf = Workflow(source=source, format="ui", nodes=[])
    used: dict[str, list[str]] = {}

    def collect_definitions(container: dict[str, Any], prefix: str) -> list[tuple[dict[str, Any], str]]:
        defs = container.get("definitions")
        if not isinstance(defs, dict):
            return []
        subgraphs = defs.get("subgraphs", [])
        if not isinstance(subgraphs, list):
            raise WorkflowError(
                f"{source}: {prefix}definitions.subgraphs is not a list", "fix or re-export the workflow"
            )
        found = []
        for i, sg in enumerate(subgraphs):
            where = f"{prefix}definitions.subgraphs[{i}]"
            if not isinstance(sg, dict) or not isinstance(sg.get("id"), str):
                raise WorkflowError(f"{source}: {where} has no id", "fix or re-export the workflow")
            wf.subgraphs[sg["id"]] = str(sg.get("name") or sg["id"])
            found.append((sg, where))
            found += collect_definitions(sg, f"{where}.")
        return found

    def walk(nodes: Any, where: str, subgraph: str | None) -> None:
        if not isinstance(nodes, list):
            raise WorkflowError(f"{source}: {where} is not a list of nodes", "fix or re-export the workflow")
        for i, node in enumerate(nodes):
            at = f"{where}[{i}]"
            if not isinstance(node, dict):
                raise WorkflowError(f"{source}: {at} is not a node object", "fix or re-export the workflow")
            node_type = node.get("type")
            if not isinstance(node_type, str) or not node_type:
                raise WorkflowError(
                    f"{source}: {at} (id {node.get('id')}) has no type", "fix or re-export the workflow"
                )
            if node_type.startswith(("workflow/", "workflow>")):  # legacy group node: its nodes are in extra.groupNodes
                continue
            widgets = node.get("widgets_values", [])
            props = node.get("properties") or {}
            wf.nodes.append(
                WorkflowNode(
                    id=str(node.get("id")),
                    type=node_type,
                    path=at,
                    widgets=widgets if isinstance(widgets, list | dict) else [],
                    properties=props if isinstance(props, dict) else {},
                    subgraph=subgraph,
                    mode=node.get("mode", 0) if isinstance(node.get("mode", 0), int) else 0,
                )
            )
            used.setdefault(node_type, []).append(at)

    definitions = collect_definitions(data, "")
    walk(data["nodes"], "nodes", None)
    for sg, where in definitions:
        walk(sg.get("nodes", []), f"{where}.nodes", wf.subgraphs[sg["id"]])
    groups = (data.get("extra") or {}).get("groupNodes") or {}
    if isinstance(groups, dict):
        for name, group in groups.items():
            if isinstance(group, dict):
                walk(group.get("nodes", []), f"extra.groupNodes[{json.dumps(name)}].nodes", f"group {name}")
    for node_type, paths in used.items():
        if node_type not in wf.subgraphs and _looks_like_uuid(node_type):
            wf.missing_subgraphs[node_type] = paths
    return wf
