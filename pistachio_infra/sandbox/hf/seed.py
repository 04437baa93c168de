"""Stand-in content for the HF hub stand-in: the base-model manifest's repos plus a few ComfyUI-typical repos.

Every file is generated from its repo id and path, so two sandboxes hold byte-identical files and the seeded
commits have the same shas everywhere. `.safetensors` files are real safetensors with tiny tensors named like the
real model's; `.pth` and other binaries are deterministic bytes; configs are plausible JSON.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
from safetensors.numpy import save as save_safetensors

from ...paths import data_dir
from .store import HubStore, RepoCard

KiB = 1024

GITATTRIBUTES = "".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n"
    for suffix in (".bin", ".ckpt", ".gguf", ".model", ".msgpack", ".onnx", ".pt", ".pth", ".safetensors", ".zip")
)


def noise(seed: str, size: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def binary_blob(seed: str, size: int) -> bytes:
    header = f"PISTACHIO SANDBOX STAND-IN {seed}\n".encode()
    return header + noise(seed, max(size - len(header), 0))


def safetensors_file(seed: str, shapes: dict[str, tuple[int, ...]]) -> bytes:
    tensors = {}
    for name, shape in shapes.items():
        raw = np.frombuffer(noise(f"{seed}:{name}", int(np.prod(shape))), dtype=np.uint8)
        tensors[name] = ((raw.astype(np.float32) / 255.0 - 0.5) * 0.04).astype(np.float16).reshape(shape)
    # One metadata key only: safetensors writes the metadata map in hash order, which would vary run to run.
    return save_safetensors(tensors, metadata={"format": "pt"})


def json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def readme(title: str, license: str, tags: list[str], gated: bool = False) -> bytes:
    front = [f"license: {license}", "tags:", *[f"- {t}" for t in tags]]
    if gated:
        front.append("extra_gated_prompt: By clicking below you accept the license.")
    return ("---\n" + "\n".join(front) + f"\n---\n\n# {title}\n\nSandbox stand-in: small generated files.\n").encode()


# -- Wan 2.1 T2V 14B ---------------------------------------------------------------------------------------------
WAN_REPO = "Wan-AI/Wan2.1-T2V-14B"
WAN_SHARDS = 6
T5_SIZE = 11 * 1024 * KiB
WAN_CONFIG = {
    "__name__": "Config",
    "_class_name": "WanModel",
    "_diffusers_version": "0.30.0",
    "dim": 5120,
    "eps": 1e-06,
    "ffn_dim": 13824,
    "freq_dim": 256,
    "in_dim": 16,
    "model_type": "t2v",
    "num_heads": 40,
    "num_layers": 40,
    "out_dim": 16,
    "text_len": 512,
}


def _wan_shard_shapes(index: int) -> dict[str, tuple[int, ...]]:
    """Tensor names of the real checkpoint; each shard holds a slice of the 40 blocks (tiny shapes)."""
    per_shard = -(-WAN_CONFIG["num_layers"] // WAN_SHARDS)
    blocks = range(index * per_shard, min((index + 1) * per_shard, WAN_CONFIG["num_layers"]))
    shapes: dict[str, tuple[int, ...]] = {}
    if index == 0:
        shapes |= {"patch_embedding.weight": (16, 16, 1, 2, 2), "text_embedding.0.weight": (16, 64)}
    for b in blocks:
        for part in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "ffn.0", "ffn.2"):
            shapes[f"blocks.{b}.{part}.weight"] = (32, 32)
    if index == WAN_SHARDS - 1:
        shapes |= {"head.head.weight": (64, 32), "head.modulation": (1, 2, 32)}
    return shapes


def _wan_files() -> dict[str, Callable[[], bytes]]:
    shard_names = [f"diffusion_pytorch_model-{i + 1:05d}-of-{WAN_SHARDS:05d}.safetensors" for i in range(WAN_SHARDS)]
    weight_map = {name: shard_names[i] for i in range(WAN_SHARDS) for name in _wan_shard_shapes(i)}
    files: dict[str, Callable[[], bytes]] = {
        "README.md": lambda: readme("Wan2.1 T2V 14B", "apache-2.0", ["video generation", "text-to-video"]),
        "config.json": lambda: json_bytes(WAN_CONFIG),
        "diffusion_pytorch_model.safetensors.index.json": lambda: json_bytes(
            {"metadata": {"total_size": 57153097728}, "weight_map": dict(sorted(weight_map.items()))}
        ),
        "Wan2.1_VAE.pth": lambda: binary_blob(f"{WAN_REPO}/Wan2.1_VAE.pth", 512 * KiB),
        # Bigger than huggingface_hub's 10 MiB download chunk: a transfer dropped past the first chunk resumes with a
        # Range request (smaller files restart from byte 0), so this is the file to interrupt in resume tests.
        "models_t5_umt5-xxl-enc-bf16.pth": lambda: binary_blob(f"{WAN_REPO}/t5", T5_SIZE),
        "google/umt5-xxl/special_tokens_map.json": lambda: json_bytes(
            {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        ),
        "google/umt5-xxl/spiece.model": lambda: binary_blob(f"{WAN_REPO}/spiece.model", 64 * KiB),
        "google/umt5-xxl/tokenizer.json": lambda: json_bytes(
            {"version": "1.0", "model": {"type": "Unigram", "unk_id": 2}, "added_tokens": []}
        ),
        "google/umt5-xxl/tokenizer_config.json": lambda: json_bytes(
            {"tokenizer_class": "T5Tokenizer", "model_max_length": 512, "extra_ids": 300}
        ),
    }
    for i, name in enumerate(shard_names):
        files[name] = lambda i=i: safetensors_file(f"{WAN_REPO}/{i}", _wan_shard_shapes(i))
    return files


# -- JoyCaption Alpha Two ----------------------------------------------------------------------------------------
JOYCAPTION_REPO = "fancyfeast/llama-joycaption-alpha-two-hf-llava"
JOYCAPTION_CONFIG = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "image_token_index": 128077,
    "image_seq_length": 729,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "full",
    "torch_dtype": "bfloat16",
    "text_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256},
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "image_size": 384, "patch_size": 14},
}


def _joycaption_files() -> dict[str, Callable[[], bytes]]:
    shapes = {
        "language_model.model.embed_tokens.weight": (64, 32),
        **{f"language_model.model.layers.{i}.self_attn.q_proj.weight": (32, 32) for i in range(4)},
        **{f"vision_tower.vision_model.encoder.layers.{i}.mlp.fc1.weight": (32, 32) for i in range(4)},
        "multi_modal_projector.linear_1.weight": (32, 32),
        "multi_modal_projector.linear_2.weight": (32, 32),
        "language_model.lm_head.weight": (64, 32),
    }
    return {
        "README.md": lambda: readme("JoyCaption Alpha Two", "llama3.1", ["captioning"]),
        "config.json": lambda: json_bytes(JOYCAPTION_CONFIG),
        "generation_config.json": lambda: json_bytes({"bos_token_id": 128000, "eos_token_id": [128001, 128009]}),
        "model.safetensors": lambda: safetensors_file(JOYCAPTION_REPO, shapes),
        "special_tokens_map.json": lambda: json_bytes({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
        "tokenizer.json": lambda: json_bytes({"version": "1.0", "model": {"type": "BPE"}, "added_tokens": []}),
        "tokenizer_config.json": lambda: json_bytes({"tokenizer_class": "PreTrainedTokenizerFast"}),
    }


# -- ComfyUI-typical repos (for model search and `comfy resolve`) -------------------------------------------------
def _checkpoint(seed: str) -> bytes:
    return safetensors_file(
        seed,
        {
            "model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3),
            "model.diffusion_model.out.2.weight": (4, 32, 3, 3),
            "first_stage_model.decoder.conv_out.weight": (3, 32, 3, 3),
            "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (64, 32),
        },
    )


def _lora(seed: str) -> bytes:
    shapes: dict[str, tuple[int, ...]] = {}
    for block in ("input_blocks_4_1", "middle_block_1", "output_blocks_3_1"):
        key = f"lora_unet_{block}_transformer_blocks_0_attn1_to_q"
        shapes |= {f"{key}.lora_down.weight": (8, 64), f"{key}.lora_up.weight": (64, 8), f"{key}.alpha": (1,)}
    return safetensors_file(seed, shapes)


def _single(seed: str, prefix: str) -> bytes:
    return safetensors_file(seed, {f"{prefix}.{i}.weight": (32, 32) for i in range(4)})


def _comfy_repos() -> list[SeedRepo]:
    wan_c = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
    sdxl = "stabilityai/stable-diffusion-xl-base-1.0"
    lightning = "ByteDance/SDXL-Lightning"
    flux = "black-forest-labs/FLUX.1-dev"
    te = "comfyanonymous/flux_text_encoders"
    up = "Kim2091/UltraSharp"
    return [
        SeedRepo(
            wan_c,
            RepoCard(library_name="diffusion-single-file", tags=["diffusion-single-file", "comfyui"], downloads=900000),
            datetime(2025, 2, 26, tzinfo=UTC),
            {
                "README.md": lambda: readme("Wan 2.1 repackaged for ComfyUI", "apache-2.0", ["comfyui"]),
                **{
                    f"split_files/diffusion_models/{n}.safetensors": (lambda n=n: _single(f"{wan_c}/{n}", "blocks"))
                    for n in ("wan2.1_t2v_14B_fp8_e4m3fn", "wan2.1_t2v_14B_bf16", "wan2.1_t2v_1.3B_fp16")
                },
                "split_files/vae/wan_2.1_vae.safetensors": lambda: _single(f"{wan_c}/vae", "decoder.conv"),
                "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors": lambda: _single(
                    f"{wan_c}/umt5", "encoder.block"
                ),
                "split_files/clip_vision/clip_vision_h.safetensors": lambda: _single(f"{wan_c}/clipv", "visual"),
            },
        ),
        SeedRepo(
            sdxl,
            RepoCard(
                pipeline_tag="text-to-image",
                library_name="diffusers",
                tags=["text-to-image", "sdxl"],
                downloads=2000000,
                likes=6500,
            ),
            datetime(2023, 7, 25, tzinfo=UTC),
            {
                "README.md": lambda: readme("SD-XL 1.0-base", "openrail++", ["text-to-image"]),
                "sd_xl_base_1.0.safetensors": lambda: _checkpoint(f"{sdxl}/base"),
                "sd_xl_base_1.0_0.9vae.safetensors": lambda: _checkpoint(f"{sdxl}/base-0.9vae"),
                "sd_xl_offset_example-lora_1.0.safetensors": lambda: _lora(f"{sdxl}/offset-lora"),
            },
        ),
        SeedRepo(
            lightning,
            RepoCard(
                pipeline_tag="text-to-image",
                library_name="diffusers",
                tags=["text-to-image", "lora", "sdxl"],
                downloads=150000,
                likes=2000,
            ),
            datetime(2024, 2, 20, tzinfo=UTC),
            {
                "README.md": lambda: readme("SDXL-Lightning", "openrail++", ["text-to-image", "lora"]),
                **{
                    f"sdxl_lightning_{n}step_lora.safetensors": (lambda n=n: _lora(f"{lightning}/{n}"))
                    for n in (2, 4, 8)
                },
            },
        ),
        SeedRepo(
            flux,
            RepoCard(
                pipeline_tag="text-to-image",
                library_name="diffusers",
                tags=["text-to-image", "flux"],
                downloads=1500000,
                likes=11000,
                gated="auto",
            ),
            datetime(2024, 7, 31, tzinfo=UTC),
            {
                "README.md": lambda: readme("FLUX.1 [dev]", "other", ["text-to-image"], gated=True),
                "flux1-dev.safetensors": lambda: _single(f"{flux}/dev", "double_blocks"),
                "ae.safetensors": lambda: _single(f"{flux}/ae", "decoder.conv"),
            },
        ),
        SeedRepo(
            te,
            RepoCard(tags=["comfyui", "text-encoder"], downloads=400000),
            datetime(2024, 8, 1, tzinfo=UTC),
            {
                "README.md": lambda: readme("Flux text encoders", "apache-2.0", ["comfyui"]),
                "clip_l.safetensors": lambda: _single(f"{te}/clip_l", "text_model.encoder.layers"),
                "t5xxl_fp16.safetensors": lambda: _single(f"{te}/t5xxl_fp16", "encoder.block"),
                "t5xxl_fp8_e4m3fn.safetensors": lambda: _single(f"{te}/t5xxl_fp8", "encoder.block"),
            },
        ),
        SeedRepo(
            up,
            RepoCard(tags=["upscaler", "esrgan"], downloads=50000),
            datetime(2023, 1, 5, tzinfo=UTC),
            {
                "README.md": lambda: readme("4x-UltraSharp", "cc-by-nc-sa-4.0", ["upscaler"]),
                "4x-UltraSharp.pth": lambda: binary_blob(f"{up}/4x-UltraSharp.pth", 128 * KiB),
            },
        ),
    ]


# -- seeding -----------------------------------------------------------------------------------------------------
@dataclass
class SeedRepo:
    repo_id: str
    card: RepoCard
    created: datetime
    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)


def generic_file(repo_id: str, path: str) -> bytes:
    """Content for a manifest path no seed knows: shaped by its extension."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".safetensors":
        return _single(f"{repo_id}/{path}", "weights")
    if suffix == ".json":
        return json_bytes({"_name_or_path": repo_id, "pistachio_sandbox": "stand-in"})
    if suffix in {".pth", ".pt", ".bin", ".ckpt", ".model", ".gguf", ".onnx"}:
        return binary_blob(f"{repo_id}/{path}", 64 * KiB)
    return f"sandbox stand-in for {repo_id}/{path}\n".encode()


def manifest_files(manifest: Path | None = None) -> dict[str, set[str]]:
    """repo_id -> paths named by the base-model manifest (pistachio_infra/data/models.toml)."""
    with (manifest or data_dir() / "models.toml").open("rb") as fh:
        data = tomllib.load(fh)
    out: dict[str, set[str]] = {}
    for model in data.get("models", {}).values():
        for f in model.get("files", []):
            out.setdefault(f["repo_id"], set()).add(f["path"])
    return out


def seed_repos(manifest: Path | None = None) -> list[SeedRepo]:
    known = {
        WAN_REPO: SeedRepo(
            WAN_REPO,
            RepoCard(
                pipeline_tag="text-to-video",
                library_name="diffusers",
                tags=["video generation", "text-to-video"],
                downloads=120000,
                likes=1400,
            ),
            datetime(2025, 2, 25, tzinfo=UTC),
            _wan_files(),
        ),
        JOYCAPTION_REPO: SeedRepo(
            JOYCAPTION_REPO,
            RepoCard(
                pipeline_tag="image-text-to-text",
                library_name="transformers",
                tags=["captioning", "llava"],
                downloads=60000,
                likes=500,
            ),
            datetime(2024, 10, 6, tzinfo=UTC),
            _joycaption_files(),
        ),
    }
    for repo in _comfy_repos():
        known[repo.repo_id] = repo
    for repo_id, paths in manifest_files(manifest).items():
        seed = known.setdefault(repo_id, SeedRepo(repo_id, RepoCard(), datetime(2025, 1, 1, tzinfo=UTC)))
        for path in paths - seed.files.keys():
            seed.files[path] = lambda r=repo_id, p=path: generic_file(r, p)
    return list(known.values())


def seed_from_manifest(root: Path, manifest: Path | None = None) -> None:
    """Create the manifest's repos (and the ComfyUI extras) under `root`; idempotent.

    A fresh repo gets the hub's two usual first commits at fixed dates, so its shas are the same in every sandbox.
    An existing repo is left as it is (published revisions survive) except that paths it lacks get one new commit.
    """
    store = HubStore(root)
    for seed in seed_repos(manifest):
        repo = store.repo(seed.repo_id)
        if repo is None:
            store.create_repo(seed.repo_id, seed.card, created_at=seed.created)
            store.commit(seed.repo_id, {".gitattributes": GITATTRIBUTES.encode()}, "initial commit", date=seed.created)
            files = {path: make() for path, make in sorted(seed.files.items())}
            store.commit(seed.repo_id, files, "Upload folder using huggingface_hub", date=seed.created, author="hf")
            continue
        head = repo.resolve("main")
        missing = sorted(seed.files.keys() - (head.files.keys() if head else set()))
        if missing:
            store.commit(seed.repo_id, {p: seed.files[p]() for p in missing}, "Add sandbox stand-in files")
