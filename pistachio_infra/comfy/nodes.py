"""Which node types of a workflow core ComfyUI provides, and which custom node pack provides each of the others.

Evidence, strongest first, for each node type:
  1. the user's choice (`--choose TYPE=URL`);
  2. what the workflow itself records: `properties.cnr_id` ("comfy-core" = core; otherwise the pack's registry id,
     matched to the repository name of a pack that provides the type) or `properties.aux_id` ("owner/repo"), with
     `properties.ver` pinning the pack to a commit when it is a git sha;
  3. the core node list (data/comfyui-core-nodes.txt, plus the database's own ComfyUI entry);
  4. ComfyUI-Manager's extension-node-map.json: a pack's `preemptions`, then the packs listing the type (when several
     do, the one the workflow already needs for another type), then the regex `nodename_pattern` entries.
A type several packs provide with nothing to choose between them is reported as ambiguous with its candidates,
best first (most of the workflow's custom types, then the pack ComfyUI-Manager listed first: forks come later);
only `--yes` takes the first. A type no pack provides is unresolved, never guessed.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from functools import cache

from ..paths import data_dir
from .database import CORE_REPO, ManagerDatabase
from .workflow import Workflow

SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return url.lower()


def repo_name(url: str) -> str:
    return url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]


def _registry_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


@cache
def shipped_core_nodes() -> frozenset[str]:
    lines = (data_dir() / "comfyui-core-nodes.txt").read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def core_nodes(db: ManagerDatabase | None = None) -> frozenset[str]:
    extra = db.ext_map.get(CORE_REPO, [[]])[0] if db else []
    return shipped_core_nodes() | frozenset(extra)


@dataclass
class PackNeed:
    url: str
    title: str
    types: list[str]
    how: str  # what decided it: choice, cnr_id, aux_id, extension-node-map, preemption, nodename_pattern, …
    commit: str | None = None  # pin from the workflow (properties.ver) when it is a git sha
    version: str | None = None  # registry version recorded in the workflow, when not a sha
    pip: list[str] = field(default_factory=list)  # extra pip packages the Manager lists for the pack
    install_type: str = "git-clone"


@dataclass
class NodeResolution:
    core: list[str]
    packs: list[PackNeed]
    ambiguous: dict[str, list[str]]  # type -> candidate pack URLs
    unresolved: list[str]
    missing_subgraphs: list[str]


class PackIndex:
    """Lookups over one database: type -> packs, pack metadata, patterns, preemptions."""

    def __init__(self, db: ManagerDatabase) -> None:
        self.db = db
        self.core = core_nodes(db)
        self.by_type: dict[str, list[str]] = {}
        self.preempt: dict[str, str] = {}
        self.patterns: list[tuple[re.Pattern[str], str]] = []
        self.title: dict[str, str] = {}
        for url, entry in db.ext_map.items():
            if normalize_url(url) == normalize_url(CORE_REPO):
                continue
            names, meta = entry[0], (entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {})
            self.title[url] = meta.get("title_aux") or repo_name(url)
            for name in names:
                self.by_type.setdefault(name, []).append(url)
            for name in meta.get("preemptions", []):
                self.preempt[name] = url
            if meta.get("nodename_pattern"):
                with contextlib.suppress(re.error):
                    self.patterns.append((re.compile(meta["nodename_pattern"]), url))
        self.packs: dict[str, dict] = {}
        self.order: dict[str, int] = {}
        for position, pack in enumerate(db.node_list):
            for url in pack.get("files", [])[:1]:
                self.order.setdefault(normalize_url(url), position)
            for url in [*pack.get("files", [])[:1], pack.get("reference", "")]:
                if url:
                    self.packs.setdefault(normalize_url(url), pack)
        self.by_repo_key: dict[str, list[str]] = {}
        for url in self.title:
            self.by_repo_key.setdefault(_registry_key(repo_name(url)), []).append(url)

    def meta(self, url: str) -> dict:
        return self.packs.get(normalize_url(url), {})

    def pack_title(self, url: str) -> str:
        return self.meta(url).get("title") or self.title.get(url) or repo_name(url)


def _workflow_evidence(wf: Workflow, node_type: str) -> tuple[str | None, str | None, str | None]:
    """(cnr_id, aux_id, ver) recorded on the workflow's nodes of this type, first one that says anything."""
    for node in wf.nodes:
        if node.type != node_type:
            continue
        props = node.properties
        cnr, aux, ver = props.get("cnr_id"), props.get("aux_id"), props.get("ver")
        if cnr or aux:
            return (
                cnr if isinstance(cnr, str) else None,
                aux if isinstance(aux, str) else None,
                ver if isinstance(ver, str) else None,
            )
    return None, None, None


Decision = tuple[str, str, str | None, str | None]  # (pack url, how it was found, commit, version)


def resolve_nodes(
    wf: Workflow, db: ManagerDatabase, choices: dict[str, str] | None = None, *, auto: bool = False
) -> NodeResolution:
    """Core types, packs to install, ambiguous and unresolved types. `auto` (--yes) settles an ambiguous type with
    the best-ranked candidate instead of asking."""
    index = PackIndex(db)
    choices = choices or {}
    core: list[str] = []
    decided: dict[str, Decision] = {}
    pending: dict[str, list[str]] = {}
    unresolved: list[str] = []

    for node_type in sorted(wf.node_types()):
        kind, found = _place(wf, index, node_type, choices)
        if kind == "core":
            core.append(node_type)
        elif kind == "decided":
            decided[node_type] = found  # type: ignore[assignment]
        elif kind == "pending":
            pending[node_type] = found  # type: ignore[assignment]
        else:
            unresolved.append(node_type)

    ambiguous = _settle(index, decided, pending, auto=auto)
    return NodeResolution(
        core=sorted(core),
        packs=sorted(_packs(index, decided).values(), key=lambda p: p.title.lower()),
        ambiguous=ambiguous,
        unresolved=sorted(unresolved),
        missing_subgraphs=sorted(wf.missing_subgraphs),
    )


def _place(
    wf: Workflow, index: PackIndex, node_type: str, choices: dict[str, str]
) -> tuple[str, Decision | list[str] | None]:
    """Where one node type comes from: ("core", None), ("decided", Decision), ("pending", candidate URLs) or
    ("unresolved", None); the evidence in ComfyUI-Manager's order (the user's choice, the workflow's own cnr_id/aux_id,
    core, preemption, the extension node map, name patterns)."""
    if node_type in choices:
        return "decided", (choices[node_type], "--choose", None, None)
    cnr, aux, ver = _workflow_evidence(wf, node_type)
    commit = ver.lower() if ver and SHA_RE.match(ver.lower()) else None
    version = ver if ver and not commit else None
    if cnr == "comfy-core":
        return "core", None
    if aux and re.fullmatch(r"[\w.-]+/[\w.-]+", aux):
        return "decided", (f"https://github.com/{aux}", "aux_id", commit, version)
    if cnr:
        providers = index.by_type.get(node_type, [])
        named = [u for u in providers if _registry_key(repo_name(u)) == _registry_key(cnr)]
        if not named:
            named = index.by_repo_key.get(_registry_key(cnr), [])
        if len(named) == 1:
            return "decided", (named[0], "cnr_id", commit, version)
    if node_type in index.core:
        return "core", None
    if node_type in index.preempt:
        return "decided", (index.preempt[node_type], "preemption", commit, version)
    providers = index.by_type.get(node_type, [])
    if len(providers) == 1:
        return "decided", (providers[0], "extension-node-map", commit, version)
    if len(providers) > 1:
        return "pending", providers
    matches = [url for pattern, url in index.patterns if pattern.search(node_type)]
    if len(set(matches)) == 1:
        return "decided", (matches[0], "nodename_pattern", commit, version)
    if matches:
        return "pending", sorted(set(matches))
    return "unresolved", None


def _settle(index: PackIndex, decided: dict[str, Decision], pending: dict[str, list[str]], *,
            auto: bool) -> dict[str, list[str]]:
    """Settle ambiguous types a pack already needed provides (and, with `auto`, the rest by rank); moves them from
    `pending` to `decided` and returns what stays ambiguous, candidates best first."""
    custom_types = set(decided) | set(pending)

    def rank(urls: list[str]) -> list[str]:
        """Most of this workflow's custom types first, then the pack ComfyUI-Manager listed first (the original,
        before its forks)."""

        def coverage(url: str) -> int:
            return sum(1 for t in custom_types if url in index.by_type.get(t, []))

        return sorted(urls, key=lambda u: (-coverage(u), index.order.get(normalize_url(u), 1 << 30), u))

    chosen_urls = {normalize_url(url) for url, *_ in decided.values()}
    while pending:
        progress = True
        while progress:
            progress = False
            for node_type, providers in list(pending.items()):
                already = [u for u in providers if normalize_url(u) in chosen_urls]
                if len(already) == 1:
                    decided[node_type] = (already[0], "extension-node-map (pack already needed)", None, None)
                    del pending[node_type]
                    progress = True
        if not pending or not auto:
            break
        node_type = max(sorted(pending), key=lambda t: len(pending[t]))
        best = rank(pending.pop(node_type))[0]
        decided[node_type] = (best, "--yes: most of the workflow's types, listed first by ComfyUI-Manager", None, None)
        chosen_urls.add(normalize_url(best))
    return {t: rank(providers) for t, providers in sorted(pending.items())}


def _packs(index: PackIndex, decided: dict[str, Decision]) -> dict[str, PackNeed]:
    """The packs to install, by normalised URL, each with the types it provides here."""
    packs: dict[str, PackNeed] = {}
    for node_type, (url, how, commit, version) in sorted(decided.items()):
        key = normalize_url(url)
        if key not in packs:
            meta = index.meta(url)
            packs[key] = PackNeed(
                url=url,
                title=index.pack_title(url),
                types=[],
                how=how,
                pip=list(meta.get("pip", [])),
                install_type=meta.get("install_type", "git-clone"),
            )
        need = packs[key]
        need.types.append(node_type)
        need.commit = need.commit or commit
        need.version = need.version or version
    return packs


def core_list_from_map(ext_map: dict) -> list[str]:
    """The names to write into data/comfyui-core-nodes.txt (after the frontend-only virtual nodes)."""
    return sorted(set(ext_map.get(CORE_REPO, [[]])[0]))
