"""Helpers for the ComfyUI tests that run against sandbox pods: the CLI as a subprocess, stand-in node packs as
local git repos, and a ComfyUI-Manager database naming them (served by the `static_server` fixture)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

from helpers import CLI, confirmed
from helpers import POD_FAST_ENV as FAST_ENV

from pistachio_infra.comfy.database import shipped_dir

__all__ = ["FAST_ENV", "cli", "git", "make_pack", "manager_db", "model_files"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "PISTACHIO_COMFY_DB"}  # the fixture's offline switch
    full.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run([CLI, *confirmed(args)], capture_output=True, text=True, timeout=timeout, env=full)


def git(*args: str, cwd: Path) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_pack(root: Path, name: str, versions: list[list[str]]) -> list[str]:
    """A node pack repo with one commit per version (each a list of node class names); returns the commit shas."""
    repo = root / name
    repo.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=repo)
    shas = []
    for nodes in versions:
        mapping = ", ".join(f'"{n}": type("{n}", (), {{}})' for n in nodes)
        (repo / "__init__.py").write_text(f"NODE_CLASS_MAPPINGS = {{{mapping}}}\n")
        (repo / "requirements.txt").write_text("numpy\n")  # already in the sandbox pod image
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", f"nodes {nodes}", cwd=repo)
        shas.append(git("rev-parse", "HEAD", cwd=repo))
    return shas


def manager_db(static_server, packs: dict[str, tuple[list[str], str]], listed: dict[str, str] | None = None):
    """A ComfyUI-Manager database at `<server>/db` mapping pack URL -> (node types, title), plus the core loaders;
    `listed` (URL -> title) goes into custom-node-list.json. Point PISTACHIO_COMFY_DB_URL at `<server.url>/db`."""
    with gzip.open(shipped_dir() / "model-list.json.gz") as fh:
        model_list = fh.read()
    node_map = {"https://github.com/comfyanonymous/ComfyUI": [["UNETLoader", "VAELoader", "CLIPLoader"], {}]}
    node_map |= {url: [types, {"title_aux": title}] for url, (types, title) in packs.items()}
    return static_server({
        "/db/extension-node-map.json": json.dumps(node_map).encode(),
        "/db/custom-node-list.json": json.dumps({"custom_nodes": [
            {"title": title, "files": [url], "install_type": "git-clone"} for url, title in (listed or {}).items()
        ]}).encode(),
        "/db/model-list.json": model_list,
    })


def model_files(models: Path) -> set[str]:
    """The files under a ComfyUI models/ folder, without the repo's put_*_here placeholders."""
    return {p.relative_to(models).as_posix() for p in models.rglob("*")
            if p.is_file() and not p.name.startswith("put_")}
