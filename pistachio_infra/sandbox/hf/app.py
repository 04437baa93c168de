"""The HTTP side of the HF hub stand-in: the routes and headers `huggingface_hub` relies on.

Resolve: `GET|HEAD /{repo_id}/resolve/{revision}/{path}` answers 200 (or 206 for a Range) straight from the blob
store, with the hub's headers: `ETag` (git oid, or sha256 for LFS files), `X-Linked-Etag` + `X-Linked-Size` for LFS
files, `X-Repo-Commit`, `Accept-Ranges`, `Content-Length`. No redirects (the real hub redirects LFS files to a CDN;
`huggingface_hub` reads the same headers either way). Errors carry `X-Error-Code` / `X-Error-Message` like the hub:
RepoNotFound (401 anonymous, 404 with a token), RevisionNotFound, EntryNotFound (404, with X-Repo-Commit),
GatedRepo (401 anonymous, 403 for a token without access).

Tokens: any bearer token starting with `hf_` is a valid user with access to gated repos, except tokens containing
`noaccess` (valid user, not on the gated list). Anything else is "Invalid credentials in Authorization header".
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .store import Commit, FileEntry, HubStore, Repo

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> Response:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


# -- auth --------------------------------------------------------------------------------------------------------
def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith("hf_") or len(token) < 8:
        raise HubError(401, None, "Invalid credentials in Authorization header")
    return token


def _repo(store: HubStore, request: Request) -> Repo:
    repo_id = f"{request.path_params['org']}/{request.path_params['name']}"
    repo = store.repo(repo_id)
    if repo is None:
        if _token(request) is None:
            raise HubError(401, "RepoNotFound", "Invalid username or password.")
        raise HubError(404, "RepoNotFound", "Repository not found")
    if repo.card.private and _token(request) is None:
        raise HubError(401, "RepoNotFound", "Invalid username or password.")
    return repo


def _commit(repo: Repo, revision: str) -> Commit:
    commit = repo.resolve(revision)
    if commit is None:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    return commit


def _check_gate(repo: Repo, request: Request) -> None:
    if not repo.gated:
        return
    token = _token(request)
    if token is None:
        raise HubError(
            401,
            "GatedRepo",
            f"Access to model {repo.id} is restricted. You must have access to it and be authenticated to access it."
            " Please log in.",
        )
    if "noaccess" in token:
        raise HubError(
            403,
            "GatedRepo",
            f"Access to model {repo.id} is restricted and you are not in the authorized list. Visit"
            f" https://huggingface.co/{repo.id} to ask for access.",
        )


# -- JSON shapes -------------------------------------------------------------------------------------------------
def _lfs_json(entry: FileEntry) -> dict[str, Any]:
    return {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}


def _last_commit_json(repo: Repo, commit: Commit, path: str) -> dict[str, Any] | None:
    changed = repo.last_change(commit.id, path)
    return {"id": changed.id, "title": changed.title, "date": changed.date} if changed else None


def _tree_entry(repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any] | None:
    entry = commit.files.get(path)
    if entry is not None:
        item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            item["lfs"] = _lfs_json(entry)
        if expand:
            item["lastCommit"] = _last_commit_json(repo, commit, path)
            item["securityFileStatus"] = {"status": "safe", "avScan": None, "pickleImportScan": None}
        return item
    children = sorted(e.oid + p for p, e in commit.files.items() if p.startswith(path.rstrip("/") + "/"))
    if not children:
        return None
    oid = hashlib.sha1("\n".join(children).encode()).hexdigest()
    item = {"type": "directory", "oid": oid, "size": 0, "path": path}
    if expand:
        item["lastCommit"] = _last_commit_json(repo, commit, path)
    return item


def _children(commit: Commit, folder: str, recursive: bool) -> list[str]:
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    out: set[str] = set()
    for path in commit.files:
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, depth + 1):
            out.add(prefix + "/".join(parts[:i]))
    return sorted(out)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes"}


def _used_storage(commit: Commit) -> int:
    return sum(e.size for e in commit.files.values())


def _model_json(repo: Repo, commit: Commit | None, *, siblings: bool, blobs: bool = False) -> dict[str, Any]:
    card = repo.card
    data: dict[str, Any] = {
        "_id": repo.id.replace("/", "--"),
        "id": repo.id,
        "modelId": repo.id,
        "author": repo.id.split("/")[0],
        "private": repo.card.private,
        "gated": card.gated,
        "disabled": False,
        "downloads": card.downloads,
        "likes": card.likes,
        "trendingScore": 0,
        "tags": card.tags,
        "pipeline_tag": card.pipeline_tag,
        "library_name": card.library_name,
        "createdAt": repo.created_at,
    }
    if commit is not None:
        data["sha"] = commit.id
        data["lastModified"] = commit.date
        data["usedStorage"] = _used_storage(commit)
        data["spaces"] = []
    if commit is not None and siblings:
        items = []
        for entry in commit.files.values():
            item: dict[str, Any] = {"rfilename": entry.path}
            if blobs:
                item |= {"blobId": entry.oid, "size": entry.size}
                if entry.lfs:
                    item["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            items.append(item)
        data["siblings"] = items
    return {k: v for k, v in data.items() if v is not None}


def _expand_params(request: Request) -> list[str]:
    return request.query_params.getlist("expand") + request.query_params.getlist("expand[]")


def _only(data: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in {"_id", "id", *fields}}


# -- resolve -----------------------------------------------------------------------------------------------------
class _DroppedBody:
    """Starts a full-length response, sends only the first `limit` bytes, then lets the server drop the connection."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, limit: int):
        self.status, self.headers, self.body, self.limit = status, headers, body, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body[: self.limit], "more_body": True})
        # Returning here without the final body message makes uvicorn close the connection mid-transfer.


def _file_headers(commit: Commit, entry: FileEntry) -> dict[str, str]:
    name = entry.path.rsplit("/", 1)[-1]
    headers = {
        "ETag": f'"{entry.etag}"',
        "X-Repo-Commit": commit.id,
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream" if entry.lfs else "text/plain; charset=utf-8",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";",
    }
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.sha256}"'
        headers["X-Linked-Size"] = str(entry.size)
    return headers


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) for a single `bytes=` range; None to serve the whole file."""
    if not header:
        return None
    match = RANGE.match(header.strip())
    if not match or not (match[1] or match[2]):
        return None  # several ranges or garbage: answer 200 with the whole file, as servers may
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    else:
        start, end = max(size - int(match[2]), 0), size - 1
    if start >= size or start > end:
        raise HubError(416, None, "Requested Range Not Satisfiable", {"Content-Range": f"bytes */{size}"})
    return start, end


def _guarded(handler: Any) -> Any:
    """A route endpoint that answers a `HubError` as the hub does (status, X-Error-Code, JSON message)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except HubError as err:
            return err.response()

    return endpoint


class _ReadApi:
    """The hub's read endpoints over one `HubStore`, one method per route."""

    def __init__(self, store: HubStore) -> None:
        self.store = store

    async def resolve(self, request: Request):
        repo = _repo(self.store, request)
        commit = _commit(repo, request.path_params["revision"])
        _check_gate(repo, request)
        path = request.path_params["path"]
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit.id})
        fault = self.store.take_fault(repo.id, path, request.method)
        if fault and fault.get("status"):
            retry = {"Retry-After": str(fault.get("retry_after", 1))} if fault["status"] in (429, 503) else {}
            raise HubError(fault["status"], None, "Injected fault", retry)
        headers = _file_headers(commit, entry)
        if request.method == "HEAD":
            return Response(b"", headers={**headers, "Content-Length": str(entry.size)})
        data = self.store.read_blob(entry.sha256)
        span = _byte_range(request.headers.get("range"), entry.size)
        status = 200
        if span is not None:
            status = 206
            data = data[span[0] : span[1] + 1]
            headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{entry.size}"
        headers["Content-Length"] = str(len(data))
        if fault and fault.get("drop_after") is not None:
            return _DroppedBody(status, headers, data, int(fault["drop_after"]))
        return Response(data, status_code=status, headers=headers)

    async def model_info(self, request: Request):
        repo = _repo(self.store, request)
        commit = _commit(repo, request.path_params.get("revision", "main"))
        data = _model_json(repo, commit, siblings=True, blobs=_truthy(request.query_params.get("blobs")))
        if _truthy(request.query_params.get("securityStatus")):
            data["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        expand = _expand_params(request)
        return JSONResponse(_only(data, expand) if expand else data)

    async def list_models(self, request: Request):
        params = request.query_params
        searches = [s.lower() for s in params.getlist("search")]
        tags = params.getlist("filter")
        author = params.get("author")
        gated = params.get("gated")
        results = []
        for repo_id in self.store.repo_ids():
            repo = self.store.repo(repo_id)
            if repo is None or not all(s in repo_id.lower() for s in searches):
                continue
            if author and repo_id.split("/")[0].lower() != author.lower():
                continue
            if tags and not all(
                t in repo.card.tags or t in (repo.card.pipeline_tag, repo.card.library_name) for t in tags
            ):
                continue
            if gated is not None and bool(repo.gated) != _truthy(gated):
                continue
            results.append(repo)
        sort = params.get("sort")
        if sort in ("downloads", "likes"):
            results.sort(key=lambda r: getattr(r.card, sort), reverse=params.get("direction") != "1")
        if sort in ("lastModified", "createdAt"):
            results.sort(key=lambda r: r.created_at, reverse=True)
        if params.get("limit"):
            results = results[: int(params["limit"])]
        full = _truthy(params.get("full"))
        expand = _expand_params(request)
        out = []
        for repo in results:
            data = _model_json(repo, repo.resolve("main"), siblings=full or "siblings" in expand)
            if expand:
                data = _only(data, expand)
            elif not full:
                data = {
                    k: v
                    for k, v in data.items()
                    if k not in {"sha", "lastModified", "usedStorage", "spaces", "author", "gated", "disabled"}
                }
            out.append(data)
        return JSONResponse(out)

    async def tree(self, request: Request):
        repo = _repo(self.store, request)
        commit = _commit(repo, request.path_params["revision"])
        folder = request.path_params.get("path", "").strip("/")
        if folder and folder in commit.files:
            raise HubError(400, None, f"'{folder}' is a file, not a folder")
        children = _children(commit, folder, _truthy(request.query_params.get("recursive")))
        if folder and not children:
            raise HubError(404, "EntryNotFound", f'{folder} does not exist on "{commit.id}"')
        expand = _truthy(request.query_params.get("expand"))
        items = [_tree_entry(repo, commit, p, expand) for p in children]
        items.sort(key=lambda i: (i["type"] != "directory", i["path"]))
        return JSONResponse(items)

    async def paths_info(self, request: Request):
        repo = _repo(self.store, request)
        commit = _commit(repo, request.path_params["revision"])
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            form = json.loads(body or b"{}")
            paths, expand = list(form.get("paths", [])), bool(form.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths, expand = form.get("paths", []), _truthy((form.get("expand") or ["false"])[0])
        items = [_tree_entry(repo, commit, p.strip("/"), expand) for p in paths]
        return JSONResponse([i for i in items if i is not None])

    async def refs(self, request: Request):
        repo = _repo(self.store, request)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha} for name, sha in repo.branches.items()
        ]
        data: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if _truthy(request.query_params.get("include_prs")):
            data["pullRequests"] = []
        return JSONResponse(data)

    async def commits(self, request: Request):
        repo = _repo(self.store, request)
        _commit(repo, request.path_params["revision"])
        return JSONResponse(
            [
                {"id": c.id, "title": c.title, "message": c.message, "authors": [{"user": c.author}], "date": c.date}
                for c in repo.history(request.path_params["revision"])
            ]
        )

    async def auth_check(self, request: Request):
        repo = _repo(self.store, request)
        _check_gate(repo, request)
        return JSONResponse({"accessRequest": None} if repo.gated else {})

    async def whoami(self, request: Request):
        token = _token(request)
        if token is None:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return JSONResponse(
            {
                "type": "user",
                "id": "sandbox-user",
                "name": "sandbox-user",
                "fullname": "Sandbox User",
                "isPro": False,
                "canPay": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "sandbox", "role": "read"}},
            }
        )


def create_app(root: Path) -> Starlette:
    """The hub stand-in over the repos stored under `root` (see `seed_from_manifest`, `publish_file`)."""
    from .upload import routes as write_routes

    store = HubStore(root)
    api = _ReadApi(store)
    repo_api = "/api/models/{org}/{name}"
    routes = [*write_routes(store, _guarded),
        Route("/api/whoami-v2", _guarded(api.whoami)),
        Route("/api/models", _guarded(api.list_models)),
        Route(repo_api, _guarded(api.model_info)),
        Route(repo_api + "/revision/{revision}", _guarded(api.model_info)),
        Route(repo_api + "/tree/{revision}", _guarded(api.tree)),
        Route(repo_api + "/tree/{revision}/{path:path}", _guarded(api.tree)),
        Route(repo_api + "/paths-info/{revision}", _guarded(api.paths_info), methods=["POST"]),
        Route(repo_api + "/refs", _guarded(api.refs)),
        Route(repo_api + "/commits/{revision}", _guarded(api.commits)),
        Route(repo_api + "/auth-check", _guarded(api.auth_check)),
        Route("/{org}/{name}/resolve/{revision}/{path:path}", _guarded(api.resolve), methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(RequestLog, store=store)])


class RequestLog:
    """ASGI middleware: one `requests.jsonl` line per request (method, path, Range, status, time)."""

    def __init__(self, app: ASGIApp, store: HubStore):
        self.app, self.store = app, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: dict[str, int] = {}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            self.store.log_request(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "range": headers.get("range"),
                    "status": status.get("code"),
                    "time": datetime.now(UTC).isoformat(),
                    "t": time.time(),
                }
            )
