from __future__ import annotations

import pytest

from pistachio_infra import catalog
from pistachio_infra.errors import ConfigError

# The exact ids of runpod-api.md §3 (GPU type table of 2026-02-12).
EXPECTED_IDS = {
    "a6000": "NVIDIA RTX A6000",
    "a40": "NVIDIA A40",
    "l40s": "NVIDIA L40S",
    "4090": "NVIDIA GeForce RTX 4090",
    "3090": "NVIDIA GeForce RTX 3090",
    "a100": "NVIDIA A100 80GB PCIe",
    "h100": "NVIDIA H100 80GB HBM3",
    "h200": "NVIDIA H200",
}
EXPECTED_VRAM = {"a6000": 48, "a40": 48, "l40s": 48, "4090": 24, "3090": 24, "a100": 80, "h100": 80, "h200": 141}


def test_classes_ids_and_vram_match_runpod():
    classes = catalog.gpu_classes()
    assert list(classes) == list(EXPECTED_IDS)
    for name, cls in classes.items():
        assert cls.gpu_type_id == EXPECTED_IDS[name]
        assert cls.vram_gb == EXPECTED_VRAM[name]
        assert cls.tier == cls.vram_gb
        assert cls.min_system_ram_gb > 28  # Wan 14B loads ~28 GB of bf16 into host RAM
        assert cls.price_hint_usd_hr > 0


def test_equivalent_ids_map_back_to_their_class():
    assert catalog.class_for_gpu_type_id("NVIDIA A100-SXM4-80GB").name == "a100"
    assert catalog.class_for_gpu_type_id("NVIDIA H100 PCIe").name == "h100"
    assert catalog.class_for_gpu_type_id("NVIDIA GeForce RTX 4090").name == "4090"
    assert catalog.class_for_gpu_type_id("NVIDIA H100 NVL") is None  # 94 GB: not the 80 GB tier


def test_unknown_class_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        catalog.gpu_class("rtx9999")
    assert "rtx9999" in str(err.value)
    for name in EXPECTED_IDS:
        assert name in err.value.fix
    assert catalog.gpu_class(" H200 ").name == "h200"


def test_every_tier_trains_an_effective_batch_of_eight():
    tiers = catalog.profiles()
    assert sorted(tiers) == [24, 48, 80, 141]
    for profile in tiers.values():
        assert profile.micro_batch * profile.grad_accum == 8
        assert profile.blocks_to_swap <= 38
        assert profile.transformer_dtype != "nf4"


def test_24gb_and_141gb_profiles():
    small = catalog.profile_for("4090")
    assert (small.micro_batch, small.grad_accum) == (1, 8)
    assert small.activation_checkpointing in (True, "unsloth")
    assert small.blocks_to_swap == 32
    assert small.transformer_dtype == "float8"
    assert small.optimizer == "AdamW8bitKahan"
    assert small.joycaption_batch == 2
    big = catalog.profile_for(catalog.gpu_class("h200"))
    assert (big.micro_batch, big.grad_accum) == (8, 1)
    assert big.transformer_dtype == "bfloat16"
    assert "adamw" in big.optimizer.lower()
    assert big.joycaption_batch >= 8
    assert catalog.profile_for("a100").joycaption_batch >= 8


def test_profile_rule_rejects_a_batch_other_than_eight():
    with pytest.raises(ValueError, match="must give 8"):
        catalog.TrainingProfile(
            tier=24, micro_batch=2, grad_accum=8, activation_checkpointing=True, blocks_to_swap=0,
            transformer_dtype="float8", optimizer="adamw", caching_batch_size=1, joycaption_batch=1,
        )


def test_base_model_and_sources():
    wan = catalog.base_model("wan21-t2v-14b")
    assert wan.diffusion_pipe_type == "wan"
    assert wan.ckpt_dir and all(f.repo_id and f.dest for f in wan.files)
    assert any(f.path == "config.json" for f in wan.files)
    with pytest.raises(ConfigError, match="unknown base model"):
        catalog.base_model("sdxl-nope")
    src = catalog.sources()
    assert set(src.repos) >= {"diffusion-pipe", "joy-caption-batch"}
    assert len(src.repos["diffusion-pipe"].commit) == 40
    assert src.image.name
