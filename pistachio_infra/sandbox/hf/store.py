"""On-disk model repos of the HF hub stand-in: commits, branches and content-addressed blobs.

Layout under `root` (every read goes to disk, so a restarted server and other processes see the same state):
    blobs/<sha256>                  file bytes
    repos/<org>/<name>/repo.json    repo card, branches and every commit's full file table
    faults.json                     one-shot faults for resolve requests (see `add_fault`)
    requests.jsonl                  one line per request served (see `request_log`)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

# What the hub's default .gitattributes sends to LFS, plus its rule that files over 10 MB always go there.
LFS_SUFFIXES = frozenset(
    {
        ".7z",
        ".arrow",
        ".bin",
        ".bz2",
        ".ckpt",
        ".ftz",
        ".gguf",
        ".gz",
        ".h5",
        ".joblib",
        ".mlmodel",
        ".model",
        ".msgpack",
        ".npy",
        ".npz",
        ".onnx",
        ".ot",
        ".parquet",
        ".pb",
        ".pickle",
        ".pkl",
        ".pt",
        ".pth",
        ".rar",
        ".safetensors",
        ".tar",
        ".tflite",
        ".tgz",
        ".wasm",
        ".xz",
        ".zip",
        ".zst",
    }
)
LFS_MIN_SIZE = 10 * 1024 * 1024


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def is_lfs(path: str, size: int) -> bool:
    return PurePosixPath(path).suffix.lower() in LFS_SUFFIXES or size >= LFS_MIN_SIZE


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int
    oid: str  # git blob oid: of the bytes, or of the LFS pointer for LFS files (as the hub reports it)
    lfs: bool

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


@dataclass(frozen=True)
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    date: str
    author: str
    files: dict[str, FileEntry]


@dataclass
class RepoCard:
    """Listing metadata the hub returns for a model (search results, model_info)."""

    pipeline_tag: str | None = None
    library_name: str | None = None
    tags: list[str] = field(default_factory=list)
    downloads: int = 0
    likes: int = 0
    gated: str | bool = False  # False, "auto" or "manual"
    private: bool = False  # readable only with a token (the hub answers 401/404 without one)


@dataclass
class Repo:
    id: str
    created_at: str
    card: RepoCard
    branches: dict[str, str]
    commits: dict[str, Commit]

    @property
    def gated(self) -> str | bool:
        return self.card.gated

    def resolve(self, revision: str) -> Commit | None:
        """A branch name or a full commit sha -> the commit (None when unknown)."""
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)

    def history(self, revision: str) -> list[Commit]:
        """Commits reachable from `revision`, newest first."""
        out: list[Commit] = []
        commit = self.resolve(revision)
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out

    def last_change(self, revision: str, path: str) -> Commit | None:
        """The newest commit at or before `revision` that changed `path` (a file, or anything under a folder)."""
        history = self.history(revision)
        for i, commit in enumerate(history):
            parent = history[i + 1] if i + 1 < len(history) else None
            if _subtree(commit, path) != (_subtree(parent, path) if parent else {}):
                return commit
        return None


def _subtree(commit: Commit, path: str) -> dict[str, str]:
    prefix = path.rstrip("/") + "/"
    return {p: e.oid for p, e in commit.files.items() if p == path or p.startswith(prefix)}


def _commit_from_json(data: dict[str, Any]) -> Commit:
    files = {p: FileEntry(**e) for p, e in data["files"].items()}
    return Commit(**{**data, "files": files})


def _repo_to_json(repo: Repo) -> dict[str, Any]:
    return {
        "id": repo.id,
        "created_at": repo.created_at,
        "card": asdict(repo.card),
        "branches": repo.branches,
        "commits": {sha: asdict(c) for sha, c in repo.commits.items()},
    }


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HubStore:
    """Model repos stored under `root`; safe to use from several processes at once."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------------------------
    def _repo_file(self, repo_id: str) -> Path:
        if not REPO_ID.match(repo_id) or ".." in repo_id:
            raise ValueError(f"not a namespaced repo id: {repo_id!r}")
        return self.root / "repos" / repo_id / "repo.json"

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".write.lock"))

    # -- reads ---------------------------------------------------------------------------------------------------
    def repo(self, repo_id: str) -> Repo | None:
        try:
            path = self._repo_file(repo_id)
        except ValueError:
            return None
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return Repo(
            id=data["id"],
            created_at=data["created_at"],
            card=RepoCard(**data["card"]),
            branches=data["branches"],
            commits={sha: _commit_from_json(c) for sha, c in data["commits"].items()},
        )

    def repo_ids(self) -> list[str]:
        base = self.root / "repos"
        return sorted(str(p.parent.relative_to(base)) for p in base.glob("*/*/repo.json"))

    def read_blob(self, sha256: str) -> bytes:
        return self.blob_path(sha256).read_bytes()

    # -- writes --------------------------------------------------------------------------------------------------
    def put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.blob_path(sha256)
        if not path.exists():
            _atomic_write(path, data)
        return sha256

    def save(self, repo: Repo) -> None:
        _atomic_write(self._repo_file(repo.id), json.dumps(_repo_to_json(repo), indent=1, sort_keys=True).encode())

    def create_repo(self, repo_id: str, card: RepoCard | None = None, created_at: datetime | None = None) -> Repo:
        with self.lock():
            existing = self.repo(repo_id)
            if existing is not None:
                return existing
            repo = Repo(
                id=repo_id,
                created_at=iso(created_at or datetime.now(UTC)),
                card=card or RepoCard(),
                branches={},
                commits={},
            )
            self.save(repo)
            return repo

    def commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        message: str,
        *,
        branch: str = "main",
        date: datetime | None = None,
        author: str = "sandbox",
        delete: tuple[str, ...] = (),
    ) -> str:
        """Add/replace `files` (path -> bytes) on `branch` as one new commit; returns its sha."""
        for path in files:
            _check_path(path)
        with self.lock():
            repo = self.repo(repo_id)
            if repo is None:
                raise KeyError(repo_id)
            parent = repo.resolve(branch)
            table = dict(parent.files) if parent else {}
            for path in delete:
                table.pop(path, None)
            for path, data in files.items():
                sha256 = self.put_blob(data)
                lfs = is_lfs(path, len(data))
                oid = git_blob_oid(lfs_pointer(sha256, len(data)) if lfs else data)
                table[path] = FileEntry(path=path, sha256=sha256, size=len(data), oid=oid, lfs=lfs)
            title, _, body = message.strip().partition("\n")
            when = iso(date or datetime.now(UTC))
            identity = json.dumps(
                [parent.id if parent else None, sorted((p, e.oid) for p, e in table.items()), message, when, author]
            )
            sha = hashlib.sha1(identity.encode()).hexdigest()
            repo.commits[sha] = Commit(
                id=sha,
                parent=parent.id if parent else None,
                title=title or "Update files",
                message=body.strip(),
                date=when,
                author=author,
                files=dict(sorted(table.items())),
            )
            repo.branches[branch] = sha
            self.save(repo)
            return sha

    # -- faults and request log ---------------------------------------------------------------------------------
    def add_fault(self, fault: dict[str, Any]) -> None:
        with self.lock():
            faults = self.faults()
            faults.append(fault)
            _atomic_write(self.root / "faults.json", json.dumps(faults).encode())

    def faults(self) -> list[dict[str, Any]]:
        path = self.root / "faults.json"
        return json.loads(path.read_text()) if path.is_file() else []

    def take_fault(self, repo_id: str, path: str, method: str) -> dict[str, Any] | None:
        """Consume one matching fault (a `drop_after` fault only matches GET)."""
        if not (self.root / "faults.json").is_file():
            return None
        with self.lock():
            faults = self.faults()
            for fault in faults:
                if fault["repo_id"] != repo_id or fault.get("path") not in (None, path):
                    continue
                if fault.get("drop_after") is not None and method != "GET":
                    continue
                fault["count"] -= 1
                remaining = [f for f in faults if f["count"] > 0]
                if remaining:
                    _atomic_write(self.root / "faults.json", json.dumps(remaining).encode())
                else:
                    (self.root / "faults.json").unlink()
                return fault
        return None

    def log_request(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "requests.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def request_log(self) -> list[dict[str, Any]]:
        path = self.root / "requests.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _check_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid path in repo: {path!r}")
