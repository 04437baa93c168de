"""The verify core against the stand-in ComfyUI: the core-node graph, POST /prompt → /history/{id} → /view, the
contact sheet, and ComfyUI's own validation errors (node_errors) surfacing as one line that names the problem.

Upstream (comfyanonymous/ComfyUI; our pin 40c4fcd is not in the reference index, so these are the stored versions
read — see tests/upstream/README.md U1-U5):
- node classes and inputs: nodes.py @ e60e19b (UNETLoader, LoraLoaderModelOnly, CLIPLoader, VAELoader,
  CLIPTextEncode, KSampler, VAEDecode, SaveImage, SaveAnimatedWEBP), comfy_extras/nodes_hunyuan.py
  (EmptyHunyuanLatentVideo: width/height step 16, length min 1 step 4, batch_size)
- validation: execution.py @ 00a0995 `validate_prompt` / `validate_inputs` ("Value not in list", details
  "<input>: '<value>' not in [...]"; "Required input is missing"; "Cannot execute because node X does not exist.")
- server.py post_prompt: 200 {"prompt_id", "number", "node_errors"} / 400 {"error", "node_errors"}; history entries
  {"prompt", "outputs": {node: {"images": [{"filename", "subfolder", "type"}]}}, "status"}.
"""

from __future__ import annotations

import json

import comfyui_standin
import httpx
import pytest
from PIL import Image

from pistachio_infra.verify.client import ComfyClient, ComfyError
from pistachio_infra.verify.graph import Sample, WanFiles, build_graph, clip_frames
from pistachio_infra.verify.plan import models_for, plan_verify
from pistachio_infra.verify.prompts import default_prompts, with_trigger
from pistachio_infra.verify.render import load_manifest, plan_samples, render_samples

FILES = WanFiles(*comfyui_standin.WAN.values())


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = comfyui_standin.clone(tmp_path_factory.mktemp("verify") / "ComfyUI")
    comfyui_standin.lora_file(root / "models" / "loras" / "pip.safetensors", 1)
    comfyui_standin.lora_file(root / "models" / "loras" / "other.safetensors", 2)
    (root / "models" / "loras" / "broken.safetensors").write_bytes(b"not a safetensors file")
    server = comfyui_standin.start(root)
    yield server
    server.stop()


def pixels(path):
    with Image.open(path) as img:
        return img.convert("RGB").tobytes()


def test_samples_with_and_without_the_lora_differ_and_repeat(comfy, tmp_path):
    samples = plan_samples(["pip7 on a beach", "pip7 in a forest"], seed=42, resolution=256)
    with ComfyClient(comfy.url) as client:
        first = render_samples(client, FILES, samples, lora="pip.safetensors", out_dir=tmp_path / "a")
        again = render_samples(client, FILES, samples, lora="pip.safetensors", out_dir=tmp_path / "b")
        other = render_samples(client, FILES, samples, lora="other.safetensors", out_dir=tmp_path / "c")
    assert [r.seed for r in first.rendered] == [42, 43]
    for a, b, c in zip(first.rendered, again.rendered, other.rendered, strict=True):
        with_lora, without = pixels(tmp_path / "a" / a.with_lora), pixels(tmp_path / "a" / a.without)
        assert with_lora != without  # the LoRA shows
        assert with_lora == pixels(tmp_path / "b" / b.with_lora)  # same prompt, seed, LoRA: same picture
        assert without == pixels(tmp_path / "c" / c.without)  # the plain model ignores which LoRA is tested
        assert with_lora != pixels(tmp_path / "c" / c.with_lora)  # another LoRA file: another picture
    assert pixels(tmp_path / "a" / first.rendered[0].without) != pixels(tmp_path / "a" / first.rendered[1].without)
    with Image.open(first.sheet) as sheet:
        assert sheet.width > 2 * 256 and sheet.height > 2 * 256
    manifest = load_manifest(tmp_path / "a")
    assert manifest and manifest["lora"] == "pip.safetensors" and len(manifest["samples"]) == 2


def test_a_clip_is_an_animated_webp(comfy, tmp_path):
    samples = plan_samples(["pip7 waving"], seed=7, resolution=128, clip=True)
    assert samples[-1].frames == clip_frames(33) == 33
    with ComfyClient(comfy.url) as client:
        result = render_samples(client, FILES, samples, lora="pip.safetensors", out_dir=tmp_path)
    clip = result.rendered[-1]
    assert clip.kind == "clip" and clip.with_lora.endswith(".webp")
    with Image.open(tmp_path / clip.with_lora) as img:
        assert img.n_frames == 33


def test_a_long_prompt_is_shortened_on_a_whole_word_in_the_progress_line(comfy, tmp_path):
    prompt = "pip7, A square image, 512x512 pixels, dominated by brown tones, soft light from the left"
    said: list[str] = []
    with ComfyClient(comfy.url) as client:
        render_samples(client, FILES, plan_samples([prompt], seed=1, resolution=128), lora="pip.safetensors",
                       out_dir=tmp_path, say=said.append)
    [line] = [m for m in said if m.startswith("sample 1/1")]
    shown = line.split(": ", 1)[1]
    assert shown.endswith(" …") and prompt.startswith(shown.removesuffix(" …") + " ")  # cut between words


def test_a_missing_model_file_fails_with_comfyuis_error_naming_it(comfy):
    graph = build_graph(WanFiles("wan2.1_t2v_14B_missing.safetensors", FILES.text_encoder, FILES.vae),
                        Sample("pip7", seed=1), lora="pip.safetensors")
    raw = httpx.post(f"{comfy.url}/prompt", json={"prompt": graph})
    assert raw.status_code == 400
    body = raw.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    err = body["node_errors"]["1"]
    assert err["class_type"] == "UNETLoader" and err["dependent_outputs"] == ["11"]
    assert err["errors"][0]["type"] == "value_not_in_list"
    assert err["errors"][0]["details"].startswith("unet_name: 'wan2.1_t2v_14B_missing.safetensors' not in [")
    with ComfyClient(comfy.url) as client, pytest.raises(ComfyError) as exc:
        client.queue(graph)
    assert "UNETLoader (node 1): Value not in list: unet_name: 'wan2.1_t2v_14B_missing.safetensors'" in str(exc.value)


def test_unknown_class_and_missing_input_are_refused_like_comfyui(comfy):
    graph = build_graph(FILES, Sample("pip7", seed=1), lora=None)
    graph["3"]["class_type"] = "WanVideoSampler"
    body = httpx.post(f"{comfy.url}/prompt", json={"prompt": graph}).json()
    assert body == {"error": {"type": "invalid_prompt", "message": "Cannot execute because node WanVideoSampler "
                              "does not exist.", "details": "Node ID '#3'", "extra_info": {}}, "node_errors": {}}
    graph = build_graph(FILES, Sample("pip7", seed=1), lora=None)
    del graph["8"]["inputs"]["seed"]
    body = httpx.post(f"{comfy.url}/prompt", json={"prompt": graph}).json()
    assert body["node_errors"]["8"]["errors"][0]["message"] == "Required input is missing"
    assert httpx.post(f"{comfy.url}/prompt", json={}).json()["error"]["type"] == "no_prompt"


def test_a_lora_that_is_not_safetensors_fails_at_execution(comfy):
    graph = build_graph(FILES, Sample("pip7", seed=1), lora="broken.safetensors")
    with ComfyClient(comfy.url) as client:
        prompt_id = client.queue(graph)
        with pytest.raises(ComfyError, match=r"in LoraLoaderModelOnly \(node 2\): Error while deserializing header"):
            client.wait(prompt_id, timeout=60)
        entry = httpx.get(f"{comfy.url}/history/{prompt_id}").json()[prompt_id]
    assert entry["status"]["status_str"] == "error"


def test_object_info_and_queue_have_comfyuis_shapes(comfy):
    info = httpx.get(f"{comfy.url}/object_info/UNETLoader").json()["UNETLoader"]
    assert info["input"]["required"]["unet_name"][0] == [FILES.diffusion_model]
    assert info["output"] == ["MODEL"] and info["output_node"] is False
    assert httpx.get(f"{comfy.url}/object_info").json()["SaveImage"]["output_node"] is True
    assert set(httpx.get(f"{comfy.url}/queue").json()) == {"queue_running", "queue_pending"}
    assert httpx.get(f"{comfy.url}/history/nope").json() == {}


def test_the_plan_uses_a_ready_comfyui_and_names_what_a_bare_one_lacks(comfy, tmp_path):
    ready = plan_verify(enabled=True, base_model="wan21-t2v-14b", comfyui_url=comfy.url, stills=4, clips=0,
                        cloud_name="runpod", pod_tier=48, pod_price_per_hr=0.5)
    assert ready.where == "comfyui" and ready.files == FILES and ready.usd == (0.0, 0.0, 0.0)
    assert ready.seconds[1] > 0 and "adds ~" in ready.line()
    off = plan_verify(enabled=False, base_model="wan21-t2v-14b", comfyui_url=comfy.url, stills=4, clips=0,
                      cloud_name="runpod", pod_tier=48, pod_price_per_hr=0.5)
    assert off.where == "skipped" and off.seconds == (0.0, 0.0, 0.0)
    bare = comfyui_standin.start(comfyui_standin.clone(tmp_path / "bare" / "ComfyUI", wan=False))
    try:
        plan = plan_verify(enabled=True, base_model="wan21-t2v-14b", comfyui_url=bare.url, stills=4, clips=0,
                           cloud_name="runpod", pod_tier=48, pod_price_per_hr=0.5)
    finally:
        bare.stop()
    assert plan.where == "skipped"
    assert "diffusion_models/wan2.1_t2v_14B_fp8_e4m3fn.safetensors (14.3 GB)" in plan.reason
    models = models_for("wan21-t2v-14b")
    assert models is not None and f"download {models.gb:.1f} GB" in plan.reason
    assert "ask for it with --verify-on-pod" in plan.reason  # never downloaded unasked


def test_prompts_carry_the_trigger_word():
    assert with_trigger("a photo of a cat", "pip7") == "pip7, a photo of a cat"
    assert with_trigger("pip7 at the beach", "pip7") == "pip7 at the beach"
    assert with_trigger("xpip7y smiling", "pip7") == "pip7, xpip7y smiling"
    prompts = default_prompts(["pip7, a red coat", "pip7, a hat", "pip7, a red coat"], "pip7", "Pip", seed=3)
    assert len(prompts) == 4 and len(set(prompts)) == 4 and all("pip7" in p for p in prompts)
    assert prompts == default_prompts(["pip7, a hat", "pip7, a red coat"], "pip7", "Pip", seed=3)
    assert json.dumps(prompts)
