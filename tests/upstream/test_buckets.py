"""DiffusionPipe's size buckets (tdrussell/diffusion-pipe@8f83dbf utils/dataset.py: `DirectoryDataset.__init__`,
`_find_closest_ar_bucket`, `ARBucketDataset.cache_latents`, `ConcatenatedBatchedDataset.post_init` /
`_make_divisible_by`, `PipelineDataLoader.__init__`; train.py `steps_per_epoch`). Row T6 of tests/upstream/README.md.

Each case is computed by hand from that code; both our preflight plan (pistachio_infra/dataset/buckets.py, fed the
dataset TOML we render) and the stand-in trainer (written separately from the same reading) must give it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomlkit
from helpers import container_with_flash_attn
from PIL import Image

from pistachio_infra.config.project import Job
from pistachio_infra.config.render import plan_job, render_job
from pistachio_infra.dataset.buckets import BucketSettings, plan_buckets
from pistachio_infra.errors import DatasetError

OURS = {"enable_ar_bucket": True, "min_ar": 0.5, "max_ar": 2.0, "num_ar_buckets": 7, "frame_buckets": [1]}

# name: (dataset keys, {image size: count}, global batch, {size bucket: examples kept}, steps per epoch)
# np.geomspace(0.5, 2.0, 7) rounded to 3 places = 0.5, 0.63, 0.794, 1.0, 1.26, 1.587, 2.0
CASES = {
    # the demo: 19 square train images at 512, batch 8 -> 16 kept, 2 steps (not ceil(19/8) = 3)
    "demo": ({**OURS, "resolutions": [512]}, {(512, 512): 19}, 8, {(1.0, 512, 512, 1): 16}, 2),
    # 3:2 goes to 1.587 (|log 1.5 - log 1.587| < |log 1.5 - log 1.26|); w = sqrt(512²·1.587) = 645.0 -> 640,
    # h = 512²/645.0 = 406.4 -> 400. 6 and 4 images, both under the batch of 8: both dropped, the dataset is empty
    "two shapes, batch 8": ({**OURS, "resolutions": [512]}, {(768, 512): 6, (512, 512): 4}, 8,
                            {(1.587, 640, 400, 1): 0, (1.0, 512, 512, 1): 0}, 0),
    # the same with num_repeats 2: 12 -> 8 and 8 -> 8
    "two shapes, 2 repeats": ({**OURS, "resolutions": [512], "num_repeats": 2}, {(768, 512): 6, (512, 512): 4},
                              8, {(1.587, 640, 400, 1): 8, (1.0, 512, 512, 1): 8}, 2),
    # two resolutions: one size bucket each, cut separately (9 -> 8 twice at batch 4: 2 + 2 steps)
    "two resolutions": ({**OURS, "resolutions": [512, 768]}, {(600, 600): 9}, 4,
                        {(1.0, 512, 512, 1): 8, (1.0, 768, 768, 1): 8}, 4),
    # explicit ar_buckets as [w, h] pairs: 16/9 = 1.778; w = sqrt(512²·1.778) = 682.7 -> 688, h = 384.0 -> 384;
    # a portrait image goes to the nearest of 1.778 and 1.0 (1.0); 5 wide -> 4 at batch 4, 3 square -> dropped
    "ar_buckets pairs": ({"resolutions": [512], "enable_ar_bucket": True, "ar_buckets": [[16, 9], [1, 1]]},
                         {(1920, 1080): 5, (512, 512): 2, (400, 600): 1}, 4,
                         {(1.778, 688, 384, 1): 4, (1.0, 512, 512, 1): 0}, 1),
    # without enable_ar_bucket every image is square-cropped into one bucket
    "no ar buckets": ({"resolutions": [512]}, {(1920, 1080): 5, (400, 600): 4}, 8, {(1.0, 512, 512, 1): 8}, 1),
}


def write_images(folder: Path, shapes: dict[tuple[int, int], int]) -> dict[str, tuple[int, int]]:
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for (w, h), count in shapes.items():
        for i in range(count):
            name = f"img_{w}x{h}_{i}.png"
            Image.new("RGB", (w, h), (200, 30, 30)).save(folder / name)
            (folder / name).with_suffix(".txt").write_text("ohwx, a thing")
            sizes[name] = (w, h)
    return sizes


def standin_module(repo: Path):
    spec = importlib.util.spec_from_file_location("standin_train", repo / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", CASES)
def test_t6_client_and_standin_bucket_like_diffusion_pipe(case, standin_repos, tmp_path, capsys):
    keys, shapes, batch, expected, steps = CASES[case]
    sizes = write_images(tmp_path / "data", shapes)
    cfg = {**keys, "directory": [{"path": str(tmp_path / "data")}]}

    plan = plan_buckets(sizes, BucketSettings.from_dataset_config(cfg), batch)
    assert {(b.ar, b.width, b.height, 1): b.kept for b in plan.buckets} == expected
    assert plan.steps_per_epoch == steps

    toml_path = tmp_path / "dataset.toml"
    toml_path.write_text(tomlkit.dumps(cfg))
    trainer = standin_module(standin_repos["diffusion-pipe"])
    if steps == 0:
        with pytest.raises(RuntimeError, match="Processed dataset was empty"):
            trainer.load_dataset(toml_path, "wan", batch)
    else:
        assert trainer.load_dataset(toml_path, "wan", batch) == (steps, expected)
    logged = capsys.readouterr().out
    for bucket in plan.buckets:
        line = f"size bucket {bucket.label} is being completely dropped because it doesn't have enough images"
        assert (line in logged) == bucket.dropped


def _wan_ckpt(root: Path) -> Path:
    path = root / "Wan2.1-T2V-14B"
    (path / "google" / "umt5-xxl").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "t2v", "dim": 5120, "num_layers": 40}))
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth",
                 "diffusion_pytorch_model-00001-of-00006.safetensors"):
        (path / name).write_bytes(b"\0" * 16)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model"):
        (path / "google" / "umt5-xxl" / name).write_text("{}")
    return path


def test_t6_rendered_job_steps_equal_the_standin_trainers_and_dropped_buckets_are_logged(
        standin_repos, pod_image, tmp_path):
    """Our rendered TOMLs on a two-shape dataset, run by the stand-in: the steps it runs are our estimate, and the
    bucket our plan reports as cut is the one it names."""
    data = tmp_path / "images"
    write_images(data, {(768, 512): 11, (512, 512): 13})
    job = Job(name="pip", character="Pip", trigger="ohwx", dataset=data, epochs=2, checkpoints=2)
    rendered = render_job(job, "a6000")
    plan = rendered.plan
    assert plan is not None and not plan.dropped_images
    train_cfg = tomllib.loads(rendered.files["train.toml"])
    # the trainer reads the train side of our split from the folder the dataset TOML names
    from pistachio_infra.dataset.scan import split_names

    train, held_out = split_names(sorted(p.name for p in data.glob("*.png")), job.seed, job.eval_split)
    for folder, names in ((tmp_path / "train", train), (tmp_path / "eval", held_out)):
        folder.mkdir()
        for name in names:
            for f in (data / name, (data / name).with_suffix(".txt")):
                (folder / f.name).write_bytes(f.read_bytes())
    dataset = tomllib.loads(rendered.files["dataset.toml"])
    dataset["directory"][0]["path"] = str(tmp_path / "train")
    eval_dataset = tomllib.loads(rendered.files["eval_dataset.toml"])
    eval_dataset["directory"][0]["path"] = str(tmp_path / "eval")
    (tmp_path / "dataset.toml").write_text(tomlkit.dumps(dataset))
    (tmp_path / "eval.toml").write_text(tomlkit.dumps(eval_dataset))
    train_cfg.update(output_dir=str(tmp_path / "out"), dataset=str(tmp_path / "dataset.toml"),
                     eval_datasets=[{"name": "val", "config": str(tmp_path / "eval.toml")}])
    train_cfg["model"]["ckpt_path"] = str(_wan_ckpt(tmp_path / "models"))
    train_cfg.pop("checkpoint_every_n_minutes", None)
    (tmp_path / "train.toml").write_text(tomlkit.dumps(train_cfg))
    (tmp_path / "scenario.json").write_text(json.dumps({"trainer": {"seconds_per_step": 0, "seconds_per_eval": 0}}))
    bin_dir = container_with_flash_attn(pod_image, tmp_path / "pod")
    env = {"PATH": f"{bin_dir}:{pod_image.bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PISTACHIO_STANDIN_SCENARIO": str(tmp_path / "scenario.json")}
    result = subprocess.run(["deepspeed", "--num_gpus=1", "train.py", "--deepspeed", "--config",
                             str(tmp_path / "train.toml")], cwd=standin_repos["diffusion-pipe"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    ran = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("steps: ")]
    assert ran and ran[-1] == rendered.cadence.estimated_steps == 2 * plan.steps_per_epoch


def test_t6_preflight_refuses_images_that_would_never_train_and_names_the_fix(tmp_path):
    data = tmp_path / "images"
    write_images(data, {(768, 512): 1, (512, 512): 11})
    from pistachio_infra.dataset.scan import split_names

    names = sorted(p.name for p in data.glob("*.png"))
    job = Job(name="pip", character="Pip", trigger="ohwx", dataset=data, epochs=2, seed=0)
    seed = next(s for s in range(100) if "img_768x512_0.png" in split_names(names, s, job.eval_split)[0])
    job = job.model_copy(update={"seed": seed})
    # one wide image alone in its bucket needs 8 repeats to fill a batch of 8: more than we choose by ourselves
    with pytest.raises(DatasetError) as refused:
        plan_job(job, 8, gpu="a6000")
    message = str(refused.value)
    assert "img_768x512_0.png (768x512)" in message and "img_512x512" not in message.split("fall short:")[1]
    assert "num_repeats = 8" in message and "\n" not in message


def test_t6_a_small_two_shape_dataset_is_fixed_with_repeats(tmp_path):
    data = tmp_path / "images"
    write_images(data, {(768, 512): 5, (512, 512): 5})
    job = Job(name="pip", character="Pip", trigger="ohwx", dataset=data, epochs=2)
    rendered = render_job(job, "a6000")
    assert rendered.plan is not None and rendered.plan.num_repeats > 1 and not rendered.plan.dropped_images
    assert f"num_repeats = {rendered.plan.num_repeats}" in rendered.files["dataset.toml"]
    assert "num_repeats = 1" in rendered.files["eval_dataset.toml"]
    # with num_repeats pinned to 1 the same dataset is refused: DiffusionPipe would find it empty
    with pytest.raises(DatasetError, match="Processed dataset was empty"):
        render_job(job.model_copy(update={"num_repeats": 1}), "a6000")
