"""ComfyUI-Manager's database: which node pack provides which node type, the pack list, and the model list.

The three JSON files are downloaded from ComfyUI-Manager's repository (raw URLs) and cached under the state
directory with the time they were fetched; a cache younger than a day is used as it is. When the download fails
(offline, GitHub down) the last cache is used whatever its age, and without one the snapshot shipped in
pistachio_infra/data/comfyui-manager/ (its commit in COMMIT there). Every result says which of these it is.

    PISTACHIO_COMFY_DB_URL   base URL of the three files (default: ComfyUI-Manager main on raw.githubusercontent.com)
    PISTACHIO_COMFY_DB=offline   never download; cache, else the shipped snapshot
"""

from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..paths import data_dir, state_dir
from ..settings import get_settings

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/Comfy-Org/ComfyUI-Manager/main"
FILES = ("extension-node-map.json", "custom-node-list.json", "model-list.json")
MAX_AGE_S = 24 * 3600
CORE_REPO = "https://github.com/comfyanonymous/ComfyUI"


@dataclass
class ManagerDatabase:
    ext_map: dict[str, Any]
    node_list: list[dict[str, Any]]
    model_list: list[dict[str, Any]]
    origin: str  # "downloaded", "cache", "snapshot"
    detail: str  # human-readable: where from and how old
    fetched_at: float | None = None
    warnings: list[str] = field(default_factory=list)


def shipped_dir() -> Path:
    return data_dir() / "comfyui-manager"


def cache_dir() -> Path:
    return state_dir() / "comfy" / "manager-db"


def _validate(name: str, data: Any) -> None:
    ok = {
        "extension-node-map.json": lambda d: (
            isinstance(d, dict) and all(isinstance(v, list) and v and isinstance(v[0], list) for v in d.values())
        ),
        "custom-node-list.json": lambda d: isinstance(d, dict) and isinstance(d.get("custom_nodes"), list),
        "model-list.json": lambda d: isinstance(d, dict) and isinstance(d.get("models"), list),
    }[name](data)
    if not ok:
        raise ValueError(f"{name} does not have ComfyUI-Manager's shape")


def _build(files: dict[str, Any], origin: str, detail: str, fetched_at: float | None) -> ManagerDatabase:
    return ManagerDatabase(
        ext_map=files["extension-node-map.json"],
        node_list=files["custom-node-list.json"]["custom_nodes"],
        model_list=files["model-list.json"]["models"],
        origin=origin,
        detail=detail,
        fetched_at=fetched_at,
    )


def _read_gz_dir(folder: Path) -> dict[str, Any]:
    files = {}
    for name in FILES:
        with gzip.open(folder / f"{name}.gz", "rt", encoding="utf-8") as fh:
            files[name] = json.load(fh)
        _validate(name, files[name])
    return files


def load_snapshot() -> ManagerDatabase:
    commit_line = (shipped_dir() / "COMMIT").read_text().strip()
    commit, _, date = commit_line.partition(" ")
    return _build(
        _read_gz_dir(shipped_dir()), "snapshot", f"shipped snapshot of ComfyUI-Manager {commit[:7]} ({date})", None
    )


def _read_cache(base_url: str) -> tuple[dict[str, Any], float] | None:
    folder = cache_dir()
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("base_url") != base_url:
            return None
        return _read_gz_dir(folder), float(meta["fetched_at"])
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _write_cache(files: dict[str, Any], base_url: str, fetched_at: float) -> None:
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        tmp = folder / f".{name}.gz.tmp"
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, folder / f"{name}.gz")
    tmp = folder / ".meta.json.tmp"
    tmp.write_text(json.dumps({"base_url": base_url, "fetched_at": fetched_at}))
    os.replace(tmp, folder / "meta.json")


def _download(base_url: str, timeout: float) -> dict[str, Any]:
    import httpx

    files = {}
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for name in FILES:
            response = client.get(f"{base_url.rstrip('/')}/{name}")
            response.raise_for_status()
            files[name] = response.json()
            _validate(name, files[name])
    return files


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_database(*, refresh: bool = False, timeout: float = 10.0) -> ManagerDatabase:
    """The freshest database we can get without failing: fresh cache, download, old cache, shipped snapshot."""
    knobs = get_settings()
    base_url = knobs.comfy_db_url or DEFAULT_BASE_URL
    offline = knobs.comfy_db_offline
    cached = _read_cache(base_url)
    now = time.time()
    if cached and not refresh and now - cached[1] < MAX_AGE_S:
        return _build(cached[0], "cache", f"ComfyUI-Manager database cached {_when(cached[1])}", cached[1])
    warning = "offline mode (PISTACHIO_COMFY_DB=offline)"
    if not offline:
        try:
            files = _download(base_url, timeout)
        except Exception as exc:  # any network, HTTP or format failure falls back; the reason is reported
            warning = f"could not download the ComfyUI-Manager database from {base_url}: {type(exc).__name__}: {exc}"
        else:
            _write_cache(files, base_url, now)
            return _build(files, "downloaded", f"ComfyUI-Manager database downloaded {_when(now)}", now)
    if cached:
        db = _build(cached[0], "cache", f"ComfyUI-Manager database cached {_when(cached[1])} (stale)", cached[1])
    else:
        db = load_snapshot()
    db.warnings.append(warning)
    return db
