"""ComfyUI's HTTP API, the part the samples need: queue a graph, follow it, fetch its files.

    POST /prompt {"prompt": graph, "client_id"}  -> {"prompt_id", "number", "node_errors"}, or 400 {"error",
                                                    "node_errors"} (upstream server.py post_prompt)
    GET /history/{prompt_id}                     -> {} while queued or running, then {id: {"outputs", "status"}}
    GET /view?filename=&subfolder=&type=output   -> the file's bytes
Completion is read from /history (polled), not from the websocket: its completion message changed across versions
("executing" with node null, then "execution_success").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from ..errors import PistachioError


class ComfyError(PistachioError):
    """ComfyUI refused or failed a graph (its own words in the message)."""


@dataclass(frozen=True)
class OutputFile:
    filename: str
    subfolder: str
    type: str
    node: str


def node_errors_line(body: dict[str, Any]) -> str:
    """ComfyUI's 400 answer as one line: each failing node's class and id, then each error's message and details
    (for a missing model file: "Value not in list: unet_name: 'x.safetensors' not in [...]")."""
    error = body.get("error")
    parts = []
    for node_id, entry in sorted((body.get("node_errors") or {}).items()):
        for err in entry.get("errors", []):
            parts.append(f"{entry.get('class_type', '?')} (node {node_id}): {err.get('message')}: "
                         f"{err.get('details')}")
    if not parts and isinstance(error, dict):
        parts.append(f"{error.get('message')}" + (f" ({error['details']})" if error.get("details") else ""))
    elif not parts and error:
        parts.append(str(error))
    return "; ".join(parts) or "no reason given"


class ComfyClient:
    def __init__(self, url: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the ComfyUI has -----------------------------------------------------------------------------------

    def object_info(self) -> dict[str, Any]:
        return self._json("GET", "/object_info")

    def models(self, folder: str) -> list[str]:
        """The files ComfyUI lists in one model folder (GET /models/{folder}); [] when it has none."""
        response = self._http.get(f"/models/{folder}")
        return response.json() if response.status_code == 200 else []

    # --- one graph ----------------------------------------------------------------------------------------------

    def queue(self, graph: dict[str, Any]) -> str:
        response = self._request("POST", "/prompt", json={"prompt": graph, "client_id": self.client_id})
        if response.status_code == 400:
            body = _body(response)
            raise ComfyError(f"ComfyUI at {self.url} refused the sample graph: {node_errors_line(body)}",
                             "put the named file into that ComfyUI's models folder (or install the node), "
                             "then rerun the same command")
        _check(response, "POST /prompt")
        return str(response.json()["prompt_id"])

    def wait(self, prompt_id: str, *, timeout: float, poll_s: float = 0.5) -> dict[str, Any]:
        """The graph's history entry once it finished (status success); ComfyError if it failed or timed out."""
        try:
            entry = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(poll_s),
                             retry=retry_if_result(lambda e: e is None))(self._finished, prompt_id)
        except RetryError:
            raise ComfyError(f"ComfyUI at {self.url} did not finish prompt {prompt_id} within {timeout:.0f}s",
                             "look at ComfyUI's log (a slow GPU, a long queue); rerun to try again") from None
        status = entry.get("status") or {}
        if status.get("status_str") not in (None, "success"):
            failed = next((m[1] for m in status.get("messages", []) if m[0] == "execution_error"), {})
            raise ComfyError(f"ComfyUI failed prompt {prompt_id} in {failed.get('node_type', '?')} (node "
                             f"{failed.get('node_id', '?')}): {failed.get('exception_message', 'no message')}",
                             "fix the named model file on that ComfyUI, then rerun the same command")
        return entry

    def _finished(self, prompt_id: str) -> dict[str, Any] | None:
        entry = self._json("GET", f"/history/{prompt_id}").get(prompt_id)
        if entry is None:
            return None
        status = entry.get("status") or {}
        return entry if status.get("completed", True) or status.get("status_str") == "error" else None

    def outputs(self, entry: dict[str, Any]) -> list[OutputFile]:
        files = []
        for node, ui in sorted(entry.get("outputs", {}).items()):
            for item in ui.get("images", []) + ui.get("gifs", []):
                files.append(OutputFile(item["filename"], item.get("subfolder", ""), item.get("type", "output"),
                                        node))
        return files

    def view(self, out: OutputFile) -> bytes:
        response = self._request("GET", "/view", params={"filename": out.filename, "subfolder": out.subfolder,
                                                         "type": out.type})
        _check(response, f"GET /view {out.filename}")
        return response.content

    # --- plumbing -----------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ComfyError(f"ComfyUI at {self.url} did not answer {method} {path} ({type(exc).__name__})",
                             "start that ComfyUI (or fix comfyui_url), or pass --no-verify") from None

    def _json(self, method: str, path: str) -> dict[str, Any]:
        response = self._request(method, path)
        _check(response, f"{method} {path}")
        return _body(response)


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"error": response.text[:200]}
    return body if isinstance(body, dict) else {"error": body}


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise ComfyError(f"ComfyUI answered {what} with HTTP {response.status_code}: {response.text[:200]}",
                         "check that the URL is a ComfyUI (pinned version) and rerun")
