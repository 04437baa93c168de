"""Real public workflows (tests/data/workflows, sources in its README): the node packs and model folders each needs,
resolved with the shipped ComfyUI-Manager snapshot; and the parser's errors on broken files."""

from __future__ import annotations

import json

import pytest

from pistachio_infra.comfy.models import find_models
from pistachio_infra.comfy.nodes import resolve_nodes
from pistachio_infra.comfy.workflow import WorkflowError, load_workflow

from .conftest import WORKFLOWS

WAN = "https://github.com/kijai/ComfyUI-WanVideoWrapper"
VHS = "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite"
KJ = "https://github.com/kijai/ComfyUI-KJNodes"

# file -> format, packs (with --yes), packs without --yes, (folder, name) of every model, core types it must see
EXPECTED = {
    "t2i_sd15_ui.json": dict(
        format="ui", packs=set(), packs_asking=set(), core={"CheckpointLoaderSimple", "KSampler", "SaveImage"},
        models={("checkpoints", "v1-5-pruned-emaonly-fp16.safetensors")},
    ),
    "t2i_sd15_api.json": dict(
        format="api", packs=set(), packs_asking=set(), core={"CheckpointLoaderSimple", "VAEDecode"},
        models={("checkpoints", "v1-5-pruned-emaonly.safetensors")},
    ),
    "qwen_image_edit_lora_subgraphed.json": dict(
        format="ui", packs=set(), packs_asking=set(), core={"UNETLoader", "LoraLoaderModelOnly", "CFGNorm"},
        models={
            ("diffusion_models", "qwen_image_edit_2509_fp8_e4m3fn.safetensors"),
            ("text_encoders", "qwen_2.5_vl_7b_fp8_scaled.safetensors"),
            ("vae", "qwen_image_vae.safetensors"),
            ("loras", "Qwen-Image-Edit-2509-Lightning-4steps-V1.0-bf16.safetensors"),
        },
    ),
    "batch_prompt_nested_subgraphs.json": dict(
        format="ui", packs={"https://github.com/cubiq/ComfyUI_essentials", KJ},
        packs_asking={"https://github.com/cubiq/ComfyUI_essentials", KJ},
        core={"GeminiImage2Node", "RegexReplace", "PrimitiveStringMultiline"}, models=set(),
    ),
    "wanvideo_t2v_kijai.json": dict(
        format="ui", packs={WAN, VHS, "https://github.com/kijai/ComfyUI-HunyuanVideoWrapper"},
        packs_asking={"https://github.com/kijai/ComfyUI-HunyuanVideoWrapper"}, core=set(),
        models={
            ("diffusion_models", "WanVideo/Wan2_1-T2V-14B_fp8_e4m3fn.safetensors"),
            ("text_encoders", "umt5-xxl-enc-bf16.safetensors"),
            ("vae", "wanvideo/Wan2_1_VAE_bf16.safetensors"),
        },
    ),
    "wanvideo_i2v_kijai.json": dict(
        format="ui", packs={WAN, VHS, KJ}, packs_asking=set(), core={"LoadImage"},
        models={
            ("diffusion_models", "WanVideo/Wan2_1-I2V-14B-480P_fp8_e4m3fn.safetensors"),
            ("text_encoders", "open-clip-xlm-roberta-large-vit-huge-14_fp16.safetensors"),
            ("text_encoders", "umt5-xxl-enc-bf16.safetensors"),
            ("vae", "wanvideo/Wan2_1_VAE_bf16.safetensors"),
        },
    ),
}


def test_every_workflow_in_the_folder_has_expectations():
    assert {p.name for p in WORKFLOWS.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_packs_and_model_folders(name, snapshot_db):
    want = EXPECTED[name]
    wf = load_workflow(WORKFLOWS / name)
    assert wf.format == want["format"]
    decided = resolve_nodes(wf, snapshot_db, auto=True)
    assert {p.url for p in decided.packs} == want["packs"]
    assert not decided.ambiguous and not decided.unresolved
    assert want["core"] <= set(decided.core)
    asking = resolve_nodes(wf, snapshot_db)
    assert {p.url for p in asking.packs} == want["packs_asking"]
    # without --yes nothing is guessed: each remaining type is offered with the right pack ranked first
    for node_type, candidates in asking.ambiguous.items():
        assert candidates[0] in want["packs"], (node_type, candidates)
        assert len(candidates) > 1
    assert {(m.folder, m.name) for m in find_models(wf)} == want["models"]


def test_wan_forks_are_offered_but_the_original_ranks_first(snapshot_db):
    asking = resolve_nodes(load_workflow(WORKFLOWS / "wanvideo_t2v_kijai.json"), snapshot_db)
    assert asking.ambiguous["WanVideoSampler"][0] == WAN
    assert "https://github.com/wuwukaka/ComfyUI-WanAnimatePlus" in asking.ambiguous["WanVideoSampler"]


def test_nested_subgraphs_pins_and_missing_definitions(snapshot_db):
    wf = load_workflow(WORKFLOWS / "batch_prompt_nested_subgraphs.json")
    assert set(wf.subgraphs.values()) >= {"Batch Prompt Iterator"}
    inner = next(n for n in wf.nodes if n.type == "SimpleMath+")
    assert inner.path.startswith("definitions.subgraphs[") and inner.subgraph == "Batch Prompt Iterator"
    res = resolve_nodes(wf, snapshot_db)
    kj = next(p for p in res.packs if p.url == KJ)
    assert kj.commit == "c661baadd9683c0033cd2a6ad90157c6d099a6c2" and kj.how == "cnr_id"
    # used as a node type inside a subgraph, but the file has no definition for it
    assert res.missing_subgraphs == ["6d92985e-3e1e-49e2-acea-91c5259d86a8"]
    # a subgraph instance is neither a core node nor a pack's node
    assert not set(wf.subgraphs) & (set(res.core) | set(res.unresolved))


def test_models_inside_subgraphs_keep_their_embedded_urls():
    models = {m.name: m for m in find_models(load_workflow(WORKFLOWS / "qwen_image_edit_lora_subgraphed.json"))}
    vae = models["qwen_image_vae.safetensors"]
    assert vae.url.startswith("https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/")
    assert vae.used_by[0].startswith("#125 VAELoader at definitions.subgraphs[0].nodes[")
    assert len(models) == 4  # the subgraph instance's promoted values fold into the loaders' references


def test_unknown_types_are_listed_never_guessed_and_patterns_resolve(snapshot_db, tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({
        "nodes": [
            {"id": 1, "type": "TotallyMadeUpNode9000", "widgets_values": ["x.safetensors"]},
            {"id": 2, "type": "DF_Integer", "widgets_values": [1]},  # Derfuu's pack: nodename_pattern "^DF_"
            {"id": 3, "type": "Note", "widgets_values": ["hello"]},
            {"id": 4, "type": "Reroute"},
        ],
        "links": [],
    }))
    wf = load_workflow(path)
    res = resolve_nodes(wf, snapshot_db, auto=True)
    assert res.unresolved == ["TotallyMadeUpNode9000"]
    (derfuu,) = res.packs
    assert derfuu.url == "https://github.com/Derfuu/Derfuu_ComfyUI_ModdedNodes"
    assert derfuu.how in ("extension-node-map", "nodename_pattern")
    (model,) = find_models(wf)
    assert model.folder is None and model.name == "x.safetensors"


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "nodes": [\n    {"id": 1, "type": "KSampler",}\n  ]\n}\n')
    with pytest.raises(WorkflowError) as err:
        load_workflow(path)
    assert "line 3 column" in err.value.one_line() and "broken.json" in err.value.one_line()


def test_bad_nodes_are_named_by_json_path(tmp_path):
    path = tmp_path / "api.json"
    path.write_text(json.dumps({"3": {"class_type": "KSampler", "inputs": {}}, "4": {"inputs": {"ckpt_name": "a"}}}))
    with pytest.raises(WorkflowError, match=r'node \["4"\] has no class_type'):
        load_workflow(path)
    path.write_text(json.dumps({"nodes": [{"id": 1, "type": "KSampler"}, {"id": 7}], "links": []}))
    with pytest.raises(WorkflowError, match=r"nodes\[1\] \(id 7\) has no type"):
        load_workflow(path)
    path.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
        load_workflow(path)


def test_png_saved_by_comfyui_carries_its_workflow(tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("workflow", (WORKFLOWS / "t2i_sd15_ui.json").read_text())
    Image.new("RGB", (8, 8)).save(tmp_path / "out.png", pnginfo=info)
    wf = load_workflow(tmp_path / "out.png")
    assert wf.format == "ui" and "CheckpointLoaderSimple" in wf.node_types()
