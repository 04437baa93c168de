"""Model sources against the HF hub stand-in through the real huggingface_hub client: exact sizes and sha256 from
the hub, hub search with candidates, the chooser, --choose, and gated repos flagged with the HF_TOKEN fix."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pistachio_infra.comfy.models import Hub, ModelRef, hub_file_from_url, resolve_models
from pistachio_infra.sandbox.hf import create_repo
from pistachio_infra.sandbox.hf.seed import _lora


def ref(name: str, folder: str, url: str | None = None) -> ModelRef:
    return ModelRef(name=name, folder=folder, used_by=["#1 test"], url=url)


def test_model_list_url_becomes_a_hub_file_with_exact_size_and_sha(hub_endpoint, snapshot_db, tmp_path):
    (res,) = resolve_models([ref("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders")], snapshot_db,
                            Hub(hub_endpoint, None))
    src = res.source
    assert src.how == "model-list" and not src.gated
    assert src.hub.repo == "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
    assert src.hub.path == "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    assert not src.size_approx
    from huggingface_hub import hf_hub_download

    got = hf_hub_download(src.hub.repo, src.hub.path, endpoint=hub_endpoint, cache_dir=str(tmp_path))
    data = Path(got).read_bytes()
    assert src.size == len(data) and src.sha256 == hashlib.sha256(data).hexdigest()


def test_embedded_url_wins_and_gated_repo_is_flagged_with_the_token_fix(hub_endpoint, snapshot_db):
    url = "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors?download=true"
    (res,) = resolve_models([ref("flux1-dev.safetensors", "diffusion_models", url)], snapshot_db,
                            Hub(hub_endpoint, None))
    assert res.source.how == "workflow" and res.source.gated
    assert "HF_TOKEN" in res.source.note and "black-forest-labs/FLUX.1-dev" in res.source.note


def test_hub_search_offers_candidates_and_asks(hub_endpoint, hub_root, snapshot_db):
    data = _lora("pistachio-search-test")
    for repo in ("someone/zebracorn-lora", "other/zebracorn-archive"):
        create_repo(hub_root, repo, {"loras/zebracorn_v2.safetensors": data, "README.md": b"# test\n"})
    asked = []

    def choose(model, candidates):
        asked.append((model.name, [f"{c.repo}/{c.path}" for c in candidates]))
        return candidates[-1]

    hub = Hub(hub_endpoint, None)
    (res,) = resolve_models([ref("zebracorn_v2.safetensors", "loras")], snapshot_db, hub, choose=choose)
    assert asked and set(asked[0][1]) == {"someone/zebracorn-lora/loras/zebracorn_v2.safetensors",
                                          "other/zebracorn-archive/loras/zebracorn_v2.safetensors"}
    assert res.source.how == "hf-search (chosen)" and res.source.size == len(data)
    assert res.source.sha256 == hashlib.sha256(data).hexdigest()

    (unanswered,) = resolve_models([ref("zebracorn_v2.safetensors", "loras")], snapshot_db, hub)
    assert unanswered.source is None and len(unanswered.candidates) == 2 and "choose" in unanswered.problem

    pick = {"zebracorn_v2.safetensors": "someone/zebracorn-lora/loras/zebracorn_v2.safetensors"}
    chosen = resolve_models([ref("zebracorn_v2.safetensors", "loras")], snapshot_db, hub, choices=pick)
    assert chosen[0].source.how == "--choose" and chosen[0].source.hub.repo == "someone/zebracorn-lora"


def test_search_finds_a_single_file_and_nothing_is_invented(hub_endpoint, hub_root, snapshot_db):
    create_repo(hub_root, "solo/quokkafied-style", {"quokkafied_style.safetensors": _lora("solo")})
    hub = Hub(hub_endpoint, None)
    found, missing = resolve_models(
        [ref("quokkafied_style.safetensors", "loras"), ref("no_such_model_anywhere_123.safetensors", "loras")],
        snapshot_db, hub,
    )
    assert found.source.how == "hf-search" and found.source.hub.repo == "solo/quokkafied-style"
    assert missing.source is None and missing.candidates == [] and missing.problem


def test_hub_urls_parse_and_other_urls_do_not():
    f = hub_file_from_url("https://huggingface.co/Kim2091/UltraSharp/resolve/main/4x-UltraSharp.pth?download=true")
    assert (f.repo, f.revision, f.path) == ("Kim2091/UltraSharp", "main", "4x-UltraSharp.pth")
    assert hub_file_from_url("https://huggingface.co/datasets/x/y/resolve/main/a.bin") is None
    assert hub_file_from_url("https://civitai.com/api/download/models/12345") is None


def test_repo_linked_in_a_note_resolves_the_kijai_wan_models(hub_endpoint, hub_root, tmp_path):
    """The Wan example's Note says "Models: https://huggingface.co/Kijai/WanVideo_comfy/tree/main"."""
    from pistachio_infra.comfy.resolve import resolve_workflow
    from pistachio_infra.comfy.target import LocalTarget

    from .conftest import WORKFLOWS

    files = {name: _lora(name) for name in ("Wan2_1-T2V-14B_fp8_e4m3fn.safetensors", "Wan2_1_VAE_bf16.safetensors",
                                            "umt5-xxl-enc-bf16.safetensors")}
    create_repo(hub_root, "Kijai/WanVideo_comfy", files)
    plan = resolve_workflow(WORKFLOWS / "wanvideo_t2v_kijai.json", LocalTarget(tmp_path / "ComfyUI"),
                            hf_endpoint=hub_endpoint, auto=True)
    steps = {m.dest: m for m in plan.models}
    assert set(steps) == {
        "models/diffusion_models/WanVideo/Wan2_1-T2V-14B_fp8_e4m3fn.safetensors",
        "models/text_encoders/umt5-xxl-enc-bf16.safetensors",
        "models/vae/wanvideo/Wan2_1_VAE_bf16.safetensors",
    }
    for step in steps.values():
        assert step.status == "download" and step.res.source.how == "repo linked in a workflow note"
        assert step.res.source.hub.repo == "Kijai/WanVideo_comfy"
    assert plan.download_bytes == sum(len(b) for b in files.values())
    assert [p.status for p in plan.packs] == ["install"] * 3 and plan.complete
