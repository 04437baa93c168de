from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from pistachio_infra.catalog import profile_for
from pistachio_infra.config.project import Job
from pistachio_infra.config.render import (
    ConfigRuleError,
    check_dataset_config,
    check_diffusion_pipe_config,
    render_job,
    write_rendered,
)
from pistachio_infra.errors import ConfigError
from pistachio_infra.pods.layout import WorkspaceLayout

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = DATA / "golden"
TIER_CLASSES = {24: "4090", 48: "a40", 80: "h100", 141: "h200"}  # one class per VRAM tier


def golden_job(**changes) -> Job:
    fields = dict(
        name="alice", character="Alice", trigger="al1ce", dataset="/data/alice", gpu=["4090"], epochs=40,
        wandb_project="loras", seed=7,
    )
    return Job.model_validate(fields | changes)


@pytest.mark.parametrize("tier", sorted(TIER_CLASSES))
def test_rendered_tier_matches_golden_files(tier, tmp_path):
    rendered = render_job(golden_job(), TIER_CLASSES[tier], WorkspaceLayout(), train_images=24)
    folder = GOLDEN / f"tier{tier}-{TIER_CLASSES[tier]}"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        write_rendered(rendered, folder)
    assert sorted(rendered.files) == sorted(p.name for p in folder.iterdir())
    for name, text in rendered.files.items():
        assert text == (folder / name).read_text(), f"{folder.name}/{name} differs (UPDATE_GOLDEN=1 to accept)"
    written = write_rendered(rendered, tmp_path / "out")
    assert [p.read_text() for p in written] == list(rendered.files.values())


@pytest.mark.parametrize("gpu", ["a6000", "a40", "l40s", "4090", "3090", "a100", "h100", "h200"])
def test_every_class_renders_by_its_tier_profile_and_the_rules(gpu):
    job = golden_job()
    rendered = render_job(job, gpu, train_images=24)
    train = tomllib.loads(rendered.files["train.toml"])
    profile = profile_for(gpu)
    assert check_diffusion_pipe_config(rendered.files["train.toml"]) == []
    assert check_dataset_config(rendered.files["dataset.toml"]) == []
    assert check_dataset_config(rendered.files["eval_dataset.toml"]) == []
    assert train["micro_batch_size_per_gpu"] * train["gradient_accumulation_steps"] == 8
    assert train["model"]["transformer_dtype"] == profile.transformer_dtype
    assert train["optimizer"]["type"] == profile.optimizer
    assert train.get("blocks_to_swap", 0) == profile.blocks_to_swap
    assert train["eval_every_n_steps"] == train["save_every_n_steps"]
    assert train["eval_datasets"] == [{"name": "eval", "config": "/workspace/jobs/alice/config/eval_dataset.toml"}]
    assert "alpha" not in train["adapter"]
    assert train["monitoring"]["wandb_api_key"] == ""
    assert rendered.joycaption["batch_processing_count"] == profile.joycaption_batch
    argv = rendered.joycaption_argv
    assert argv[argv.index("--prepend-string") + 1] == "al1ce, "
    assert argv[argv.index("--batch-processing-count") + 1] == str(profile.joycaption_batch)


def test_paths_follow_the_layout_root():
    rendered = render_job(golden_job(), "4090", WorkspaceLayout.at("/tmp/pod7/ws"), train_images=24)
    train = tomllib.loads(rendered.files["train.toml"])
    assert train["output_dir"] == "/tmp/pod7/ws/jobs/alice/output"
    assert train["dataset"] == "/tmp/pod7/ws/jobs/alice/config/dataset.toml"
    assert train["model"]["ckpt_path"] == "/tmp/pod7/ws/models/Wan2.1-T2V-14B"
    train_dir = tomllib.loads(rendered.files["dataset.toml"])["directory"][0]["path"]
    assert train_dir == "/tmp/pod7/ws/jobs/alice/dataset/train"
    assert tomllib.loads(rendered.files["eval_dataset.toml"])["directory"][0]["path"].endswith("/dataset/eval")
    assert rendered.joycaption_argv[1] == "/tmp/pod7/ws/joy-caption-batch/batch-alpha2.py"
    assert rendered.train_cwd == "/tmp/pod7/ws/diffusion-pipe"
    assert rendered.train_argv[-1] == "/tmp/pod7/ws/jobs/alice/config/train.toml"


def test_cadence_gives_about_the_requested_number_of_checkpoints():
    rendered = render_job(golden_job(epochs=40, checkpoints=10), "4090", train_images=24)
    # 24 images / 8 per step = 3 steps per epoch, 120 steps, 10 checkpoints -> every 12
    assert (rendered.cadence.estimated_steps, rendered.cadence.every) == (120, 12)
    capped = render_job(golden_job(epochs=40, max_steps=50, checkpoints=10), "4090", train_images=24)
    assert (capped.cadence.estimated_steps, capped.cadence.every) == (50, 5)
    assert tomllib.loads(capped.files["train.toml"])["max_steps"] == 50
    only_steps = render_job(golden_job(epochs=None, max_steps=200), "h200")
    assert tomllib.loads(only_steps.files["train.toml"])["epochs"] >= 200
    explicit = render_job(golden_job(save_every_n_steps=25), "a40", train_images=24)
    assert explicit.cadence.every == 25


def test_cadence_counts_the_dataset_folder(tmp_path, make_images):
    make_images(tmp_path / "alice", 30)
    rendered = render_job(golden_job(dataset=str(tmp_path / "alice")), "4090")
    assert "24 train images" in rendered.cadence.basis  # 30 images, 6 held out
    with pytest.raises(ConfigError, match="not found"):
        render_job(golden_job(dataset=str(tmp_path / "missing")), "4090")


def test_user_overrides_are_merged_then_checked():
    rendered = render_job(golden_job(overrides={"warmup_steps": 25, "optimizer": {"weight_decay": 0.05}}), "4090",
                          train_images=24)
    train = tomllib.loads(rendered.files["train.toml"])
    assert train["warmup_steps"] == 25 and train["optimizer"]["weight_decay"] == 0.05
    assert train["optimizer"]["type"] == "AdamW8bitKahan"
    bad = [
        ({"adapter": {"alpha": 16}}, "alpha is forbidden"),
        ({"model": {"transformer_dtype": "nf4"}}, "'nf4' is not valid for Wan"),
        ({"blocks_to_swap": 39}, "exceeds 38"),
        ({"eval_every_n_steps": 3}, "set them equal"),
        ({"monitoring": {"wandb_api_key": "abcdef123456"}}, "must stay empty"),
        ({"optimizer": {"type": "adamw9000"}}, "not a known optimizer"),
    ]
    for overrides, fragment in bad:
        with pytest.raises(ConfigRuleError) as err:
            render_job(golden_job(overrides=overrides), "4090", train_images=24)
        assert fragment in str(err.value)
        assert "job's overrides" in err.value.fix


def test_unknown_gpu_class_is_a_config_error():
    with pytest.raises(ConfigError, match="use one of: a6000, a40"):
        render_job(golden_job(), "foo", train_images=24)


GOOD = (GOLDEN / "tier24-4090" / "train.toml").read_text() if (GOLDEN / "tier24-4090").exists() else ""


def mutate(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("rank = 32\n", "rank = 32\nalpha = 32\n", "[adapter].alpha is forbidden"),
        ('transformer_dtype = "float8"', 'transformer_dtype = "nf4"', "'nf4' is not valid for Wan"),
        ('transformer_dtype = "float8"', 'transformer_dtype = "fp8"', "'fp8' is not one of"),
        ('eval_datasets = [{ name = "eval", config = "/workspace/jobs/alice/config/eval_dataset.toml" }]',
         'eval_datasets = ["/workspace/jobs/alice/config/eval_dataset.toml"]', "bare-string form crashes"),
        ("eval_every_n_steps = 8", "eval_every_n_steps = 4", "set them equal"),
        ("save_every_n_steps = 8", "save_every_n_epochs = 8", "set them equal"),
        ("blocks_to_swap = 32", "blocks_to_swap = 40", "exceeds 38"),
        ('output_dir = "/workspace/jobs/alice/output"', "", "output_dir is required"),
        ("epochs = 40", "", "epochs is required"),
        ("type = \"AdamW8bitKahan\"", "type = \"prodigy\"", "not a known optimizer"),
        ("wandb_api_key = ''", "wandb_api_key = 'abc123secret'", "must stay empty"),
        ("wandb_tracker_name = \"loras\"\n", "", "enable_wandb needs wandb_tracker_name present"),
        ("[model]\ntype = \"wan\"", "[model]\ntype = \"wan\"\nckpt = 1", None),  # an extra key is harmless
        ("steps_per_print = 1", "save_eval_images = true", "not a DiffusionPipe key"),
        ("activation_checkpointing = \"unsloth\"", "activation_checkpointing = 'yes'", "true, false or 'unsloth'"),
    ],
)
def test_rule_check_rejects_broken_training_configs(old, new, problem):
    assert check_diffusion_pipe_config(GOOD) == []
    problems = check_diffusion_pipe_config(mutate(GOOD, old, new))
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_rule_check_wants_save_cadence_and_model_table():
    problems = check_diffusion_pipe_config("output_dir = 'o'\ndataset = 'd'\nepochs = 1\n")
    assert any("save_every_n_epochs / save_every_n_steps" in p for p in problems)
    assert any("[model] table is required" in p for p in problems)
    assert any("[optimizer] table" in p for p in problems)
    assert check_diffusion_pipe_config("epochs = [")[0].startswith("not valid TOML")


def test_rule_check_accepts_diffusion_pipes_own_examples():
    examples = DATA / "diffusion-pipe-examples"
    assert check_diffusion_pipe_config((examples / "wan_14b_min_vram.toml").read_text()) == []
    assert check_diffusion_pipe_config((examples / "main_example.toml").read_text()) == []
    assert check_dataset_config((examples / "dataset.toml").read_text()) == []


def test_dataset_rule_check():
    assert any("more than 3" in p for p in check_dataset_config("resolutions = [256, 384, 512, 768]\n"
                                                               "[[directory]]\npath = 'x'\n"))
    assert any("[[directory]]" in p for p in check_dataset_config("resolutions = [512]\n"))
    assert any("min_ar" in p for p in check_dataset_config("resolutions = [512]\nenable_ar_bucket = true\n"
                                                          "[[directory]]\npath = 'x'\n"))
