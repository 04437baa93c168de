"""The sample graph: ComfyUI core nodes only, in API format ({node_id: {"class_type", "inputs"}}).

    UNETLoader → [LoraLoaderModelOnly] → ModelSamplingSD3 ─┐
    CLIPLoader(type "wan") → CLIPTextEncode ×2 ────────────┼→ KSampler → VAEDecode → SaveImage | SaveAnimatedWEBP
    EmptyHunyuanLatentVideo (length 1: a still; 4k+1: a clip)┘     VAELoader ┘

Class names and inputs are upstream's (comfyanonymous/ComfyUI nodes.py, comfy_extras/nodes_hunyuan.py,
comfy_extras/nodes_model_advanced.py, read at the commits in tests/upstream/README.md rows U1-U3); the sampler
settings are those of ComfyUI's own Wan 2.1 text-to-video example (shift 8, uni_pc/simple, cfg 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NEGATIVE = "blurry, low quality, distorted, deformed, watermark, text"


@dataclass(frozen=True)
class WanFiles:
    """ComfyUI's own packaging of Wan 2.1 (Comfy-Org/Wan_2.1_ComfyUI_repackaged), as names in its model folders."""

    diffusion_model: str  # models/diffusion_models
    text_encoder: str  # models/text_encoders
    vae: str  # models/vae


@dataclass(frozen=True)
class Sample:
    prompt: str
    seed: int
    width: int = 512
    height: int = 512
    frames: int = 1  # 1: a still; 4k+1: a clip
    steps: int = 30
    cfg: float = 6.0
    shift: float = 8.0
    fps: float = 16.0

    @property
    def is_clip(self) -> bool:
        return self.frames > 1


def clip_frames(frames: int) -> int:
    """The nearest valid clip length at or above `frames` (Wan's VAE packs 4 frames after the first: 4k+1)."""
    return max(5, 4 * ((max(frames, 2) - 1 + 3) // 4) + 1)


def build_graph(files: WanFiles, sample: Sample, *, lora: str | None, strength: float = 1.0,
                prefix: str = "pistachio/sample") -> dict[str, dict[str, Any]]:
    """The API-format graph of one sample; `lora` (a name in models/loras) or None for the plain model."""
    if sample.frames != 1 and (sample.frames - 1) % 4:
        raise ValueError(f"a clip has 4k+1 frames, not {sample.frames}")
    graph: dict[str, dict[str, Any]] = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": files.diffusion_model, "weight_dtype": "default"}},
    }
    model: list[Any] = ["1", 0]
    if lora is not None:
        graph["2"] = {"class_type": "LoraLoaderModelOnly",
                      "inputs": {"model": model, "lora_name": lora, "strength_model": strength}}
        model = ["2", 0]
    graph["3"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": model, "shift": sample.shift}}
    graph["4"] = {"class_type": "CLIPLoader", "inputs": {"clip_name": files.text_encoder, "type": "wan"}}
    graph["5"] = {"class_type": "CLIPTextEncode", "inputs": {"text": sample.prompt, "clip": ["4", 0]}}
    graph["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 0]}}
    graph["7"] = {"class_type": "EmptyHunyuanLatentVideo",
                  "inputs": {"width": sample.width, "height": sample.height, "length": sample.frames,
                             "batch_size": 1}}
    graph["8"] = {"class_type": "KSampler",
                  "inputs": {"model": ["3", 0], "seed": sample.seed, "steps": sample.steps, "cfg": sample.cfg,
                             "sampler_name": "uni_pc", "scheduler": "simple", "positive": ["5", 0],
                             "negative": ["6", 0], "latent_image": ["7", 0], "denoise": 1.0}}
    graph["9"] = {"class_type": "VAELoader", "inputs": {"vae_name": files.vae}}
    graph["10"] = {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["9", 0]}}
    if sample.is_clip:
        graph["11"] = {"class_type": "SaveAnimatedWEBP",
                       "inputs": {"images": ["10", 0], "filename_prefix": prefix, "fps": sample.fps,
                                  "lossless": False, "quality": 90, "method": "default"}}
    else:
        graph["11"] = {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": prefix}}
    return graph


CORE_CLASSES = ("UNETLoader", "LoraLoaderModelOnly", "ModelSamplingSD3", "CLIPLoader", "CLIPTextEncode",
                "EmptyHunyuanLatentVideo", "KSampler", "VAELoader", "VAEDecode", "SaveImage", "SaveAnimatedWEBP")
