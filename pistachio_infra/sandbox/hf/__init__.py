"""A Hugging Face hub stand-in for the sandbox (`HF_ENDPOINT`): real repo ids and paths, small generated files,
real revisions, and the routes and headers `huggingface_hub` uses to download, resume and verify.

    create_app(root)                       Starlette app over the repos stored under `root`
    seed_from_manifest(root)               the base-model manifest's repos + a few ComfyUI repos (idempotent)
    publish_file(root, repo_id, path, data, message) -> sha     a new revision on `main`
    add_fault(root, repo_id, path, drop_after=N | status=S)     one-shot faults on resolve requests
    request_log(root)                      what the server answered (method, path, range, status)
    serve(root)                            context manager: the app on a free 127.0.0.1 port in a thread
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .app import create_app
from .seed import seed_from_manifest
from .serve import serve
from .store import HubStore, RepoCard


def publish_file(root: Path, repo_id: str, path: str, data: bytes, message: str = "") -> str:
    """Commit `data` at `path` on the repo's `main` (creating the repo if needed); returns the new commit sha."""
    store = HubStore(root)
    if store.repo(repo_id) is None:
        store.create_repo(repo_id)
    return store.commit(repo_id, {path: data}, message or f"Upload {path}")


def create_repo(
    root: Path,
    repo_id: str,
    files: dict[str, bytes],
    *,
    gated: str | bool = False,
    tags: list[str] | None = None,
    message: str = "Upload folder using huggingface_hub",
) -> str:
    """A new repo with `files` in one commit (or one more commit if it exists); returns the commit sha."""
    store = HubStore(root)
    store.create_repo(repo_id, RepoCard(gated=gated, tags=tags or []))
    return store.commit(repo_id, files, message)


def add_fault(
    root: Path,
    repo_id: str,
    path: str | None = None,
    *,
    drop_after: int | None = None,
    status: int | None = None,
    retry_after: int = 1,
    count: int = 1,
) -> None:
    """The next `count` resolve requests for `repo_id` (and `path`, if given) fail.

    `drop_after=N`: a GET sends the headers and N body bytes, then the connection drops (huggingface_hub resumes
    with a Range request). `status=S`: answer S (429/503 carry Retry-After).
    """
    if (drop_after is None) == (status is None):
        raise ValueError("give exactly one of drop_after or status")
    fault: dict[str, Any] = {"repo_id": repo_id, "path": path, "count": count}
    fault |= {"drop_after": drop_after} if drop_after is not None else {"status": status, "retry_after": retry_after}
    HubStore(root).add_fault(fault)


def request_log(root: Path) -> list[dict[str, Any]]:
    return HubStore(root).request_log()


__all__ = [
    "HubStore",
    "add_fault",
    "create_app",
    "create_repo",
    "publish_file",
    "request_log",
    "seed_from_manifest",
    "serve",
]
