"""The HF hub stand-in's API routes (model_info, paths-info, tree, search, refs, whoami) via huggingface_hub."""

from __future__ import annotations

import hashlib

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFile, RepoFolder

from pistachio_infra.sandbox.hf import HubStore, publish_file, seed_from_manifest, serve

WAN = "Wan-AI/Wan2.1-T2V-14B"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = tmp_path / "hub"
    seed_from_manifest(root)
    with serve(root) as endpoint:
        yield root, HfApi(endpoint=endpoint, token=False)


def test_paths_info_gives_size_and_sha256_of_the_served_bytes(hub):
    root, api = hub
    paths = ["diffusion_pytorch_model-00003-of-00006.safetensors", "config.json", "google", "absent.bin"]
    infos = {i.path: i for i in api.get_paths_info(WAN, paths)}
    assert set(infos) == {"diffusion_pytorch_model-00003-of-00006.safetensors", "config.json", "google"}
    assert isinstance(infos["google"], RepoFolder)
    shard = infos["diffusion_pytorch_model-00003-of-00006.safetensors"]
    assert isinstance(shard, RepoFile) and shard.lfs is not None
    data = HubStore(root).read_blob(shard.lfs.sha256)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (shard.size, shard.lfs.sha256)
    assert infos["config.json"].lfs is None  # small text files are plain git blobs
    with_commit = api.get_paths_info(WAN, ["config.json"], expand=True)[0]
    assert with_commit.last_commit.oid == api.model_info(WAN).sha


def test_model_info_at_a_pinned_revision_vs_main_after_publish(hub):
    root, api = hub
    before = api.model_info(WAN, files_metadata=True)
    assert len(before.sha) == 40
    vae = next(s for s in before.siblings if s.rfilename == "Wan2.1_VAE.pth")
    assert vae.lfs.sha256 and vae.lfs.size == vae.size

    new_bytes = b"new vae weights"
    new = publish_file(root, WAN, "Wan2.1_VAE.pth", new_bytes, "Re-upload VAE")

    main = api.model_info(WAN, files_metadata=True)
    pinned = api.model_info(WAN, revision=before.sha, files_metadata=True)
    assert main.sha == new and pinned.sha == before.sha
    main_vae = next(s for s in main.siblings if s.rfilename == "Wan2.1_VAE.pth")
    pinned_vae = next(s for s in pinned.siblings if s.rfilename == "Wan2.1_VAE.pth")
    assert main_vae.lfs.sha256 == hashlib.sha256(new_bytes).hexdigest()
    assert pinned_vae.lfs.sha256 == vae.lfs.sha256
    assert [c.commit_id for c in api.list_repo_commits(WAN)][:2] == [new, before.sha]
    assert api.list_repo_refs(WAN).branches[0].target_commit == new


def test_list_models_search_finds_comfyui_repos(hub):
    _, api = hub
    assert [m.id for m in api.list_models(search="lightning")] == ["ByteDance/SDXL-Lightning"]
    assert {m.id for m in api.list_models(search="wan")} == {
        "Wan-AI/Wan2.1-T2V-14B",
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged",
    }
    assert list(api.list_models(search="no-such-model-anywhere")) == []
    (full,) = api.list_models(search="ultrasharp", full=True)
    assert [s.rfilename for s in full.siblings] == [".gitattributes", "4x-UltraSharp.pth", "README.md"]
    gated = [m.id for m in api.list_models(gated=True)]
    assert gated == ["black-forest-labs/FLUX.1-dev"]
    top = list(api.list_models(sort="downloads", limit=2))
    assert len(top) == 2 and top[0].downloads >= top[1].downloads


def test_list_repo_tree_root_subfolder_and_recursive(hub):
    _, api = hub
    top = {e.path: e for e in api.list_repo_tree(WAN)}
    assert isinstance(top["google"], RepoFolder) and "google/umt5-xxl/tokenizer.json" not in top
    sub = {e.path for e in api.list_repo_tree(WAN, path_in_repo="google/umt5-xxl")}
    assert "google/umt5-xxl/tokenizer.json" in sub
    everything = {e.path for e in api.list_repo_tree(WAN, recursive=True)}
    assert {"google", "google/umt5-xxl", "google/umt5-xxl/spiece.model", "config.json"} <= everything


def test_seed_is_idempotent_deterministic_and_survives_a_restart(hub, tmp_path):
    root, _ = hub
    heads = {r: HubStore(root).repo(r).branches["main"] for r in HubStore(root).repo_ids()}
    new = publish_file(root, WAN, "extra.txt", b"hello", "Add extra")
    seed_from_manifest(root)  # must not undo the publish or add commits
    assert HubStore(root).repo(WAN).branches["main"] == new

    other = tmp_path / "other-hub"
    seed_from_manifest(other)
    assert {r: HubStore(other).repo(r).branches["main"] for r in HubStore(other).repo_ids()} == heads

    with serve(root) as second:  # a second server on the same root (a restart) sees the published revision
        assert HfApi(endpoint=second).model_info(WAN).sha == new


def test_whoami_accepts_hf_tokens_and_rejects_others(hub):
    _, api = hub
    assert api.whoami(token="hf_sandbox")["name"] == "sandbox-user"
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        api.whoami(token="not-a-token")
