"""ComfyUI-Manager database: download over real HTTP, a dated cache, stale-cache and shipped-snapshot fallbacks."""

from __future__ import annotations

import json

import pytest

from pistachio_infra.comfy import database
from pistachio_infra.comfy.database import load_database
from pistachio_infra.comfy.nodes import resolve_nodes
from pistachio_infra.comfy.workflow import parse_workflow

EXT_MAP = {
    "https://github.com/comfyanonymous/ComfyUI": [["KSampler"], {"title_aux": "ComfyUI"}],
    "https://example.org/brand-new-pack": [["BrandNewNode"], {"title_aux": "Brand new"}],
}
NODE_LIST = {"custom_nodes": [{"title": "Brand New Pack", "files": ["https://example.org/brand-new-pack"],
                               "reference": "https://example.org/brand-new-pack", "install_type": "git-clone"}]}
MODEL_LIST = {"models": []}


def files(ext_map=None) -> dict[str, bytes]:
    return {
        "/db/extension-node-map.json": json.dumps(ext_map or EXT_MAP).encode(),
        "/db/custom-node-list.json": json.dumps(NODE_LIST).encode(),
        "/db/model-list.json": json.dumps(MODEL_LIST).encode(),
    }


@pytest.fixture
def remote_db(static_server, monkeypatch):
    server = static_server(files())
    monkeypatch.setenv("PISTACHIO_COMFY_DB_URL", f"{server.url}/db")
    monkeypatch.delenv("PISTACHIO_COMFY_DB")
    return server


def test_download_then_fresh_cache_without_network(remote_db):
    first = load_database()
    assert first.origin == "downloaded" and "BrandNewNode" in first.ext_map["https://example.org/brand-new-pack"][0]
    assert len(remote_db.requests) == 3
    second = load_database()
    assert second.origin == "cache" and second.fetched_at == first.fetched_at
    assert len(remote_db.requests) == 3  # a fresh cache is used as it is
    assert (database.cache_dir() / "meta.json").exists()
    wf = parse_workflow({"nodes": [{"id": 1, "type": "BrandNewNode"}], "links": []})
    (pack,) = resolve_nodes(wf, second).packs
    assert pack.title == "Brand New Pack" and pack.url == "https://example.org/brand-new-pack"


def test_stale_cache_is_refreshed_and_used_when_the_server_is_down(remote_db):
    load_database()
    meta = database.cache_dir() / "meta.json"
    old = json.loads(meta.read_text())
    meta.write_text(json.dumps({**old, "fetched_at": old["fetched_at"] - 3 * 86400}))
    remote_db.files = files({**EXT_MAP, "https://example.org/newer": [["NewerNode"], {}]})
    refreshed = load_database()
    assert refreshed.origin == "downloaded" and "https://example.org/newer" in refreshed.ext_map

    meta.write_text(json.dumps({**json.loads(meta.read_text()), "fetched_at": old["fetched_at"] - 3 * 86400}))
    remote_db.failing = True
    stale = load_database()
    assert stale.origin == "cache" and "(stale)" in stale.detail
    assert "https://example.org/newer" in stale.ext_map
    assert "503" in stale.warnings[0]


def test_no_cache_and_no_network_falls_back_to_the_shipped_snapshot(remote_db):
    remote_db.failing = True
    db = load_database()
    assert db.origin == "snapshot" and "f39cbd5" in db.detail
    assert len(db.ext_map) > 5000 and db.warnings


def test_a_download_that_is_not_the_managers_format_is_not_cached(remote_db):
    remote_db.files = {**files(), "/db/model-list.json": b'{"oops": []}'}
    db = load_database()
    assert db.origin == "snapshot" and "shape" in db.warnings[0]
    assert not (database.cache_dir() / "meta.json").exists()


def test_refresh_downloads_even_with_a_fresh_cache(remote_db):
    load_database()
    load_database(refresh=True)
    assert len(remote_db.requests) == 6


def test_offline_mode_never_touches_the_network(static_server, monkeypatch):
    server = static_server(files())
    monkeypatch.setenv("PISTACHIO_COMFY_DB_URL", f"{server.url}/db")
    db = load_database()  # PISTACHIO_COMFY_DB=offline from the autouse fixture
    assert db.origin == "snapshot" and server.requests == []
