"""Fixtures for the ComfyUI resolver: the shipped ComfyUI-Manager snapshot, a seeded HF hub stand-in, a tiny HTTP
server for database downloads, and workflow paths."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[1] / "data" / "workflows"


@pytest.fixture(autouse=True)
def comfy_home(tmp_path, monkeypatch):
    """Our own state dir and no database download unless a test points PISTACHIO_COMFY_DB_URL somewhere."""
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PISTACHIO_COMFY_DB", "offline")
    return tmp_path / "home"


@pytest.fixture(scope="session")
def snapshot_db():
    from pistachio_infra.comfy.database import load_snapshot

    return load_snapshot()


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory) -> Path:
    from pistachio_infra.sandbox.hf import seed_from_manifest

    root = tmp_path_factory.mktemp("hf")
    seed_from_manifest(root)
    return root


@pytest.fixture(scope="session")
def hub_endpoint(hub_root) -> Iterator[str]:
    from pistachio_infra.sandbox.hf import serve

    with serve(hub_root) as endpoint:
        yield endpoint


class StaticFiles:
    """Serves a dict of path -> bytes on 127.0.0.1 and counts requests; `down()` makes every request fail."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        self.failing = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if outer.failing or body is None:
                    self.send_response(503 if outer.failing else 404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def static_server():
    servers: list[StaticFiles] = []

    def make(files: dict[str, bytes]) -> StaticFiles:
        servers.append(StaticFiles(files))
        return servers[-1]

    yield make
    for server in servers:
        server.close()
