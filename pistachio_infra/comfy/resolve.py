"""One call from a workflow file to a plan: parse, resolve nodes and models, compare with the target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .database import load_database
from .models import Chooser, Hub, find_models, repos_in_notes, resolve_models
from .nodes import resolve_nodes
from .plan import Plan, make_plan
from .workflow import load_workflow


def resolve_workflow(
    workflow: str | Path,
    target: Any,
    *,
    hf_endpoint: str,
    hf_token: str | None = None,
    choices: dict[str, str] | None = None,
    choose: Chooser | None = None,
    search: bool = True,
    refresh_db: bool = False,
    auto: bool = False,
) -> Plan:
    """The plan for `workflow` on `target` (LocalTarget / PodTarget). `choices` maps a node type to a pack URL or a
    model name to a hub file ("repo/path" or URL); `choose` is asked when several hub files fit a model."""
    wf = load_workflow(workflow)
    db = load_database(refresh=refresh_db)
    choices = choices or {}
    node_types = wf.node_types()
    nodes = resolve_nodes(wf, db, {k: v for k, v in choices.items() if k in node_types}, auto=auto)
    hub = Hub(hf_endpoint, hf_token)
    refs = find_models(wf)
    models = resolve_models(
        refs, db, hub, choices=choices, choose=choose, search=search, hint_repos=repos_in_notes(wf.note_texts())
    )
    plan = make_plan(wf, nodes, models, target.inventory(), target=target.label, database=db.detail)
    plan.warnings = db.warnings + plan.warnings
    return plan
