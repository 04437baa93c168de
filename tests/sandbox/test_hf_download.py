"""The HF hub stand-in as seen by the real huggingface_hub client: downloads, resume, revisions, errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import load_file

from pistachio_infra.paths import data_dir
from pistachio_infra.sandbox.hf import add_fault, publish_file, request_log, seed_from_manifest, serve

WAN = "Wan-AI/Wan2.1-T2V-14B"
JOYCAPTION = "fancyfeast/llama-joycaption-alpha-two-hf-llava"
GATED = "black-forest-labs/FLUX.1-dev"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A seeded stand-in on a free port; the client's cache and home live under tmp_path, no token anywhere."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = tmp_path / "hub"
    seed_from_manifest(root)
    with serve(root) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)  # for subprocesses; in-process calls pass endpoint=
        yield root, endpoint, tmp_path / "cache"


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest_files() -> list[tuple[str, str]]:
    with (data_dir() / "models.toml").open("rb") as fh:
        models = tomllib.load(fh)["models"]
    return [(f["repo_id"], f["path"]) for m in models.values() for f in m["files"]]


def test_every_manifest_file_downloads_and_matches_the_hub_sha256(hub):
    _, endpoint, cache = hub
    api = HfApi(endpoint=endpoint, token=False)
    for repo_id, path in manifest_files():
        local = hf_hub_download(repo_id, path, endpoint=endpoint, cache_dir=cache, token=False)
        (info,) = api.get_paths_info(repo_id, [path])
        assert Path(local).stat().st_size == info.size
        if info.lfs is not None:
            assert sha256_of(local) == info.lfs.sha256
            # The cache names an LFS blob after the ETag it verified against: the sha256.
            assert Path(local).resolve().name == info.lfs.sha256
        else:
            assert Path(local).resolve().name == info.blob_id
    config = json.loads(Path(hf_hub_download(WAN, "config.json", endpoint=endpoint, cache_dir=cache)).read_text())
    assert (config["model_type"], config["dim"], config["num_layers"]) == ("t2v", 5120, 40)


def test_wan_shards_are_real_safetensors_matching_the_index(hub):
    _, endpoint, cache = hub
    index_path = hf_hub_download(
        WAN, "diffusion_pytorch_model.safetensors.index.json", endpoint=endpoint, cache_dir=cache
    )
    weight_map = json.loads(Path(index_path).read_text())["weight_map"]
    shard = "diffusion_pytorch_model-00001-of-00006.safetensors"
    tensors = load_file(hf_hub_download(WAN, shard, endpoint=endpoint, cache_dir=cache))
    assert "blocks.0.self_attn.q.weight" in tensors
    assert set(tensors) == {name for name, file in weight_map.items() if file == shard}


def test_snapshot_download_of_joycaption(hub):
    _, endpoint, cache = hub
    folder = Path(snapshot_download(JOYCAPTION, endpoint=endpoint, cache_dir=cache, token=False))
    listed = set(HfApi(endpoint=endpoint).list_repo_files(JOYCAPTION))
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == listed
    assert {"config.json", "model.safetensors"} <= listed
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llava"
    assert load_file(folder / "model.safetensors")["multi_modal_projector.linear_1.weight"].shape == (32, 32)
    # The snapshot folder is named after the commit main points to.
    assert folder.name == HfApi(endpoint=endpoint).model_info(JOYCAPTION).sha


def test_dropped_transfer_resumes_with_a_range_request(hub):
    root, endpoint, cache = hub
    path = "models_t5_umt5-xxl-enc-bf16.pth"
    (info,) = HfApi(endpoint=endpoint).get_paths_info(WAN, [path])
    # Past huggingface_hub's 10 MiB download chunk, so the client has bytes on disk when the connection drops.
    cut = 10 * 1024 * 1024 + 12345
    assert info.size > cut
    add_fault(root, WAN, path, drop_after=cut)

    local = hf_hub_download(WAN, path, endpoint=endpoint, cache_dir=cache, token=False)

    assert sha256_of(local) == info.lfs.sha256
    gets = [r for r in request_log(root) if r["method"] == "GET" and r["path"].endswith(path)]
    assert [(r["range"], r["status"]) for r in gets] == [(None, 200), (f"bytes={10 * 1024 * 1024}-", 206)]


def test_transient_503_is_retried(hub):
    root, endpoint, cache = hub
    add_fault(root, WAN, "config.json", status=503, count=1)
    local = hf_hub_download(WAN, "config.json", endpoint=endpoint, cache_dir=cache)
    assert json.loads(Path(local).read_text())["dim"] == 5120
    statuses = [r["status"] for r in request_log(root) if r["path"].endswith("/config.json")]
    assert statuses[0] == 503 and statuses[-1] == 200


def test_range_requests_are_served_exactly(hub):
    _, endpoint, _ = hub
    url = f"{endpoint}/{WAN}/resolve/main/Wan2.1_VAE.pth"
    whole = httpx.get(url).content
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    assert part.content == whole[100:200]
    assert httpx.get(url, headers={"Range": "bytes=-10"}).content == whole[-10:]
    assert httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}).status_code == 416


def test_download_by_commit_sha_after_publish(hub):
    root, endpoint, cache = hub
    api = HfApi(endpoint=endpoint)
    old = api.model_info(WAN).sha
    old_bytes = Path(hf_hub_download(WAN, "config.json", endpoint=endpoint, cache_dir=cache)).read_bytes()
    new = publish_file(root, WAN, "config.json", b'{"model_type": "t2v", "dim": 5120, "v": 2}\n', "Update config")
    assert new != old and api.model_info(WAN).sha == new

    assert (
        Path(hf_hub_download(WAN, "config.json", endpoint=endpoint, cache_dir=cache))
        .read_bytes()
        .endswith(b'"v": 2}\n')
    )
    fresh_cache = cache.parent / "fresh-cache"
    pinned = hf_hub_download(WAN, "config.json", revision=old, endpoint=endpoint, cache_dir=fresh_cache)
    assert Path(pinned).read_bytes() == old_bytes


def test_gated_repo_needs_a_token(hub):
    _, endpoint, cache = hub
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download(GATED, "flux1-dev.safetensors", endpoint=endpoint, cache_dir=cache, token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as not_listed:
        hf_hub_download(GATED, "ae.safetensors", endpoint=endpoint, cache_dir=cache, token="hf_noaccess_user")
    assert not_listed.value.response.status_code == 403

    local = hf_hub_download(GATED, "flux1-dev.safetensors", endpoint=endpoint, cache_dir=cache, token="hf_sandbox")
    assert load_file(local)
    # Listing a gated repo stays public, as on the hub; auth_check says whether a token may download.
    assert HfApi(endpoint=endpoint, token=False).model_info(GATED).gated == "auto"
    with pytest.raises(GatedRepoError):
        HfApi(endpoint=endpoint, token=False).auth_check(GATED)
    HfApi(endpoint=endpoint, token="hf_sandbox").auth_check(GATED)
    HfApi(endpoint=endpoint, token=False).auth_check(WAN)


def test_missing_things_map_to_huggingface_hub_errors(hub):
    _, endpoint, cache = hub
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(WAN, "no-such-file.bin", endpoint=endpoint, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError) as missing_repo:
        hf_hub_download("nobody/nothing", "config.json", endpoint=endpoint, cache_dir=cache, token=False)
    assert not isinstance(missing_repo.value, GatedRepoError)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=endpoint, token="hf_sandbox").model_info("nobody/nothing")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(WAN, "config.json", revision="v9", endpoint=endpoint, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        HfApi(endpoint=endpoint).model_info(WAN, revision="0" * 40)


def test_env_configured_clients_in_a_fresh_process(hub, tmp_path):
    """A process that only has HF_ENDPOINT set (like a pod) downloads with the library and the `hf` CLI."""
    _, endpoint, _ = hub
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "sub-cache")}
    code = (
        f"from huggingface_hub import hf_hub_download;print(hf_hub_download({WAN!r}, 'google/umt5-xxl/tokenizer.json'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(Path(out.stdout.strip()).read_text())["model"]["type"] == "Unigram"

    hf_cli = Path(sys.executable).with_name("hf")
    dest = tmp_path / "local"
    out = subprocess.run(
        [str(hf_cli), "download", JOYCAPTION, "config.json", "model.safetensors", "--local-dir", str(dest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((dest / "config.json").read_text())["architectures"] == ["LlavaForConditionalGeneration"]
    assert (dest / "model.safetensors").stat().st_size > 0
