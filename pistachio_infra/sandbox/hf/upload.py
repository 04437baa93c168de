"""The write side of the HF hub stand-in: what `huggingface_hub` 1.x sends to create a repo and commit to it.

Held to huggingface/huggingface_hub at the locked version (1.33.0, uv.lock):
- `HfApi.create_repo` (hf_api.py): POST /api/repos/create, JSON {name, organization, visibility?, type?};
  answers {"url"}; 409 when it exists (exist_ok=True accepts it).
- `HfApi.create_commit` → `HfApi._validate_yaml` when README.md is added: POST /api/validate-yaml
  {content, repoType}; answers {"errors": [], "warnings": []}.
- `_commit_api._fetch_upload_modes`: POST /api/models/{repo}/preupload/{revision} {"files": [{path, sample
  (base64), size}]}; answers {"files": [{path, uploadMode: "lfs"|"regular", shouldIgnore, oid?}]}
  (`_validate_preupload_info`). The stand-in answers "regular" for every file, so the client sends the bytes in
  the commit itself (no LFS batch / xet transfer to imitate).
- `_commit_api._upload_files` / `_prepare_commit_payload`: POST /api/models/{repo}/commit/{revision},
  Content-Type application/x-ndjson: a {"key": "header", "value": {summary, description, parentCommit?}} line,
  then {"key": "file", "value": {content (base64), path, encoding}}, "deletedFile"/"deletedFolder" lines;
  answers {"commitUrl", "commitOid", "pullRequestUrl"}.
Writes need a token (`Authorization: Bearer hf_…`); a token naming itself read-only (`hf_read…`) is refused with
403, as the hub refuses a read token or a fine-grained token without write access to the namespace.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .store import HubStore, RepoCard

USER = "sandbox-user"  # whoami-v2's name: the namespace of repos created without an organization


def _writer(request: Request) -> str:
    from .app import HubError, _token

    token = _token(request)
    if token is None:
        raise HubError(401, None, "Invalid credentials in Authorization header")
    if token.startswith("hf_read"):
        raise HubError(403, None, "You don't have the rights to write to this namespace (read-only token)")
    return token


def _writable(store: HubStore, request: Request) -> Any:
    from .app import HubError

    _writer(request)
    repo_id = f"{request.path_params['org']}/{request.path_params['name']}"
    repo = store.repo(repo_id)
    if repo is None:
        raise HubError(404, "RepoNotFound", "Repository not found")
    if request.path_params["revision"] != "main":
        raise HubError(400, None, "the sandbox hub commits to main only")
    return repo


def routes(store: HubStore, guarded: Any) -> list[Route]:
    from .app import HubError

    async def create(request: Request) -> JSONResponse:
        _writer(request)
        body = await request.json()
        if body.get("type", "model") != "model":
            raise HubError(400, None, "the sandbox hub holds model repos only")
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        url = f"{str(request.base_url).rstrip('/')}/{repo_id}"
        if store.repo(repo_id) is not None:
            return JSONResponse({"error": "You already created this model repo", "url": url}, status_code=409)
        store.create_repo(repo_id, RepoCard(private=body.get("visibility") == "private"))
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    async def validate_yaml(request: Request) -> JSONResponse:
        await request.json()
        return JSONResponse({"errors": [], "warnings": []})

    async def preupload(request: Request) -> JSONResponse:
        _writable(store, request)
        body = await request.json()
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body["files"]]
        return JSONResponse({"files": files})

    async def commit(request: Request) -> JSONResponse:
        repo = _writable(store, request)
        lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        header = next((item["value"] for item in lines if item["key"] == "header"), None)
        if header is None:
            raise HubError(400, None, "the commit payload has no header line")
        files: dict[str, bytes] = {}
        deleted: list[str] = []
        head = repo.resolve("main")
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, None, f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted.append(value["path"])
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                deleted += [p for p in (head.files if head else {}) if p.startswith(prefix)]
            elif key == "lfsFile":
                raise HubError(400, None, "the sandbox hub takes every file as a regular upload (preupload said so)")
        parent = header.get("parentCommit")
        if parent and head is not None and parent != head.id:
            raise HubError(412, None, "A commit has happened since. Please refresh and try again.")
        message = header.get("summary", "") + (f"\n\n{header['description']}" if header.get("description") else "")
        sha = store.commit(repo.id, files, message, delete=tuple(deleted))
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"commitUrl": f"{base}/{repo.id}/commit/{sha}", "commitOid": sha,
                             "pullRequestUrl": None})

    repo_api = "/api/models/{org}/{name}"
    return [
        Route("/api/repos/create", guarded(create), methods=["POST"]),
        Route("/api/validate-yaml", guarded(validate_yaml), methods=["POST"]),
        Route(repo_api + "/preupload/{revision}", guarded(preupload), methods=["POST"]),
        Route(repo_api + "/commit/{revision}", guarded(commit), methods=["POST"]),
    ]
