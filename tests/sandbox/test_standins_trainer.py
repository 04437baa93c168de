"""The stand-in DiffusionPipe trainer, run through the image's `deepspeed` launcher the real way: output layout,
TensorBoard scalars, refusals, resume, signal files, wandb key handling, and the whole path inside a pod."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomlkit
from helpers import container_with_flash_attn
from PIL import Image
from safetensors import safe_open
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pistachio_infra.sandbox import pypi
from pistachio_infra.sandbox.image import PodImage
from pistachio_infra.sandbox.podhost import PodHost, pod_user
from pistachio_infra.sandbox.standins import build_repos

RUN_DIR = re.compile(r"^\d{8}_\d{2}-\d{2}-\d{2}$")
FAST = {"seconds_per_step": 0.0, "seconds_per_eval": 0.0, "noise": 0.0}


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    return build_repos(tmp_path_factory.mktemp("git"))


@pytest.fixture(scope="module")
def checkout(repos, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("checkout") / "diffusion-pipe"
    subprocess.run(["git", "-c", "protocol.file.allow=always", "clone", "-q", "--recurse-submodules",
                    repos["diffusion-pipe"].url, str(dest)], check=True, capture_output=True)
    return dest


@pytest.fixture
def ckpt(tmp_path) -> Path:
    """A Wan checkpoint dir with the files DiffusionPipe opens (contents are not read beyond config.json)."""
    path = tmp_path / "models" / "Wan2.1-T2V-14B"
    (path / "google" / "umt5-xxl").mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (path / "google" / "umt5-xxl" / name).write_text("{}")
    (path / "google" / "umt5-xxl" / "spiece.model").write_bytes(b"\0" * 16)
    (path / "config.json").write_text(json.dumps({"model_type": "t2v", "dim": 5120, "num_layers": 40}))
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth",
                 "diffusion_pytorch_model-00001-of-00006.safetensors"):
        (path / name).write_bytes(b"\0" * 16)
    return path


def images(folder: Path, n: int, colour=(200, 30, 30), captions: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (64, 48), colour).save(folder / f"img{i}.png")
        if captions:
            (folder / f"img{i}.txt").write_text("ohwx, a thing")
    return folder


class Job:
    """A training job's files in a tmp dir: dataset, eval set, TOMLs, scenario; runs the trainer."""

    def __init__(self, root: Path, checkout: Path, ckpt: Path, image: PodImage, bin_dir: Path,
                 n_images: int = 4) -> None:
        self.root, self.checkout, self.image, self.bin_dir = root, checkout, image, bin_dir
        self.data = images(root / "data", n_images)
        self.evaldata = images(root / "evaldata", 2, colour=(20, 30, 200))
        self.dataset = {"resolutions": [512], "enable_ar_bucket": True, "min_ar": 0.5, "max_ar": 2.0,
                        "num_ar_buckets": 7, "frame_buckets": [1], "directory": [{"path": str(self.data),
                                                                                   "num_repeats": 1}]}
        self.eval_dataset = {"resolutions": [512], "directory": [{"path": str(self.evaldata), "num_repeats": 1}]}
        self.config = {
            "output_dir": str(root / "output"), "dataset": str(root / "dataset.toml"),
            "eval_datasets": [{"name": "val", "config": str(root / "eval_val.toml")}],
            "epochs": 3, "micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
            "save_every_n_steps": 4, "eval_every_n_steps": 4, "eval_before_first_step": True,
            "save_dtype": "bfloat16", "steps_per_print": 1,
            "model": {"type": "wan", "ckpt_path": str(ckpt), "dtype": "bfloat16", "transformer_dtype": "float8",
                      "timestep_sample_method": "logit_normal"},
            "adapter": {"type": "lora", "rank": 8, "dtype": "bfloat16"},
            "optimizer": {"type": "adamw_optimi", "lr": 2e-5, "betas": [0.9, 0.99], "weight_decay": 0.01},
            "monitoring": {"enable_wandb": False, "wandb_api_key": "", "wandb_tracker_name": "",
                           "wandb_run_name": ""},
        }
        self.scenario = {"trainer": dict(FAST)}

    @property
    def output(self) -> Path:
        return Path(self.config["output_dir"])

    def write(self) -> Path:
        (self.root / "dataset.toml").write_text(tomlkit.dumps(self.dataset))
        (self.root / "eval_val.toml").write_text(tomlkit.dumps(self.eval_dataset))
        (self.root / "scenario.json").write_text(json.dumps(self.scenario))
        path = self.root / "wan_lora.toml"
        path.write_text(tomlkit.dumps(self.config))
        return path

    def command(self, *extra: str, launcher: bool = True) -> list[str]:
        config = self.write()
        head = ["deepspeed", "--num_gpus=1"] if launcher else ["python"]
        return [*head, "train.py", "--deepspeed", "--config", str(config), *extra]

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.bin_dir}:{self.image.bin_dir}:/usr/bin:/bin", "HOME": str(self.root),
                "PISTACHIO_STANDIN_SCENARIO": str(self.root / "scenario.json"), "NCCL_P2P_DISABLE": "1",
                "NCCL_IB_DISABLE": "1", **extra}

    def run(self, *extra: str, launcher: bool = True, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*extra, launcher=launcher), cwd=self.checkout, env=self.env(**env),
                              capture_output=True, text=True, timeout=120)

    def run_dirs(self) -> list[Path]:
        return sorted(p for p in self.output.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def pod_python(pod_image, tmp_path_factory) -> Path:
    """A pod's Python after bootstrap: the image plus the stand-in flash-attn wheel."""
    return container_with_flash_attn(pod_image, tmp_path_factory.mktemp("pod"))


@pytest.fixture
def job(tmp_path, checkout, ckpt, pod_image, pod_python) -> Job:
    return Job(tmp_path, checkout, ckpt, pod_image, pod_python)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_training_writes_the_diffusion_pipe_layout(job):
    started = datetime.now(UTC).replace(microsecond=0)
    result = job.run()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Global batch size = 1" in out and "Started new epoch: 2" in out and "Started new epoch: 3" in out
    assert "Started new epoch: 1" not in out  # train.py@8f83dbf announces only the epochs after the first
    assert re.search(r"^steps: 12 loss: [\d.]+ iter time \(s\): [\d.]+", out, re.M)
    assert "Saving model to directory step4" in out
    assert "Saving model to directory epoch3" in out and "directory step12" not in out  # the last save: epochE
    assert out.rstrip().endswith("TRAINING COMPLETE!")

    [run_dir] = job.run_dirs()
    assert RUN_DIR.match(run_dir.name)
    stamp = datetime.strptime(run_dir.name, "%Y%m%d_%H-%M-%S").replace(tzinfo=UTC)
    assert started <= stamp <= datetime.now(UTC)
    for name in ("wan_lora.toml", "dataset.toml", "eval_val.toml"):
        assert (run_dir / name).read_bytes() == (job.root / name).read_bytes()

    saved = sorted(p.name for p in run_dir.iterdir() if re.match(r"^(step|epoch)\d+$", p.name))
    assert saved == ["epoch3", "step4", "step8"]
    for name in saved:
        folder = run_dir / name
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                             "wan_lora.toml"]
        assert (folder / "wan_lora.toml").read_bytes() == (job.root / "wan_lora.toml").read_bytes()
        assert json.loads((folder / "adapter_config.json").read_text())["r"] == 8
        with safe_open(str(folder / "adapter_model.safetensors"), "numpy") as f:
            keys = list(f.keys())
            assert keys and all(k.startswith("diffusion_model.blocks.") for k in keys)
            for key in keys:
                shape = f.get_slice(key).get_shape()
                assert f.get_slice(key).get_dtype() == "BF16"
                if key.endswith(".lora_A.weight"):
                    assert shape[0] == 8
                else:
                    assert key.endswith(".lora_B.weight") and shape[1] == 8
    assert (run_dir / "latest").read_text() == "global_step12"
    assert (run_dir / "global_step12").is_dir()

    tb = scalars(run_dir)
    assert [s for s, _ in tb["val/loss"]] == [0, 4, 8, 12]  # eval before the first step, then with every save
    for q in ("0.10", "0.20", "0.30", "0.40", "0.50", "0.60", "0.70", "0.80", "0.90"):
        assert [s for s, _ in tb[f"val/loss_quantile_{q}"]] == [0, 4, 8, 12]
    mean_of_quantiles = sum(tb[f"val/loss_quantile_0.{i}0"][2][1] for i in range(1, 10)) / 9
    assert mean_of_quantiles == pytest.approx(tb["val/loss"][2][1], rel=1e-5)
    assert [s for s, _ in tb["train/loss"]] == list(range(1, 13))


@pytest.mark.parametrize("curve", ["converge", "plateau", "diverge"])
def test_eval_loss_follows_the_scenario_curve(job, curve):
    job.config.update(epochs=20, save_every_n_steps=2, eval_every_n_steps=2)
    job.scenario["trainer"].update(curve=curve, min_at_fraction=0.5)
    assert job.run().returncode == 0
    [run_dir] = job.run_dirs()
    losses = [v for _, v in scalars(run_dir)["val/loss"]]
    best = losses.index(min(losses))
    if curve == "converge":
        assert 0 < best < len(losses) - 1 and losses[-1] > min(losses) * 1.1
    elif curve == "plateau":
        assert losses[-1] == pytest.approx(min(losses)) and losses[0] > losses[-1]
    else:
        assert best == 0 and losses == sorted(losses)


def test_dataset_counting_matches_diffusion_pipe(job):
    # top level only; .txt/.json skipped; an uncaptioned image skipped (skip_empty_caption); num_repeats counts
    images(job.data / "nested", 3)
    (job.data / "img0.json").write_text("{}")
    Image.new("RGB", (32, 32)).save(job.data / "uncaptioned.png")
    job.dataset["directory"][0]["num_repeats"] = 2
    job.config.update(epochs=1, save_every_n_epochs=1)
    del job.config["save_every_n_steps"]
    result = job.run()
    assert result.returncode == 0, result.stderr
    assert "steps: 8 loss" in result.stdout and "steps: 9 loss" not in result.stdout  # 4 images x 2 repeats
    assert "Saving model to directory epoch1" in result.stdout
    assert (job.data / "cache" / "wan").is_dir()  # the latent cache lives in the dataset dir


def _del(*keys):
    def mutate(job):
        target = job.config
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return mutate


def _set(value, *keys):
    def mutate(job):
        target = job.config
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return mutate


def _no_save_cadence(job):
    del job.config["save_every_n_steps"]


def _string_eval(job):
    job.config["eval_datasets"] = [str(job.root / "eval_val.toml")]


def _no_config_json(job):
    (Path(job.config["model"]["ckpt_path"]) / "config.json").rename(job.root / "config.json.moved")


def _missing_dataset_dir(job):
    job.dataset["directory"][0]["path"] = str(job.root / "nowhere")


def _unwritable_dataset_dir(job):
    (job.data / "cache").write_text("a file where the cache dir must go")


def _wandb_without_keys(job):
    job.config["monitoring"] = {"enable_wandb": True}


def _wandb_without_any_key(job):
    job.config["monitoring"] = {"enable_wandb": True, "wandb_api_key": "", "wandb_tracker_name": "p",
                                "wandb_run_name": "r"}


REFUSALS = {
    "missing output_dir": (_del("output_dir"), "KeyError: 'output_dir'"),
    "missing epochs": (_del("epochs"), "KeyError: 'epochs'"),
    "missing model dtype": (_del("model", "dtype"), "KeyError: 'dtype'"),
    "missing adapter rank": (_del("adapter", "rank"), "KeyError: 'rank'"),
    "nf4 transformer dtype": (_set("nf4", "model", "transformer_dtype"), "KeyError: 'nf4'"),
    "unknown dtype": (_set("bf16", "model", "dtype"), "KeyError: 'bf16'"),
    "alpha in adapter": (_set(32, "adapter", "alpha"), "NotImplementedError"),
    "unknown adapter type": (_set("dora", "adapter", "type"), "NotImplementedError"),
    "string eval dataset": (_string_eval, "TypeError"),
    "no save cadence": (_no_save_cadence, "AssertionError"),
    "ckpt without config.json": (_no_config_json, "FileNotFoundError"),
    # utils/dataset.py@8f83dbf DirectoryDataset.__init__: `raise RuntimeError(f"Invalid path: {self.path}")`
    "dataset dir missing": (_missing_dataset_dir, "RuntimeError: Invalid path:"),
    "dataset dir not writable": (_unwritable_dataset_dir, "Error"),
    "wandb without its keys": (_wandb_without_keys, "KeyError: 'wandb_api_key'"),
    "wandb without any api key": (_wandb_without_any_key, "api_key not configured"),
    "unknown optimizer": (_set("Adafactorz", "optimizer", "type"), "AttributeError"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refuses_what_diffusion_pipe_refuses(job, case):
    mutate, expected = REFUSALS[case]
    mutate(job)
    result = job.run()
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" in result.stderr
    assert "TRAINING COMPLETE!" not in result.stdout
    assert not list(job.root.glob("output/*/step*"))


def test_refuses_to_run_without_the_launcher(job):
    result = job.run(launcher=False)
    assert result.returncode != 0 and "RANK expected" in result.stderr


def test_refuses_a_checkout_without_submodules(job, repos, tmp_path):
    bare = tmp_path / "no-submodules"
    subprocess.run(["git", "clone", "-q", repos["diffusion-pipe"].url, str(bare)], check=True)
    job.checkout = bare
    result = job.run()
    assert result.returncode != 0 and "No module named 'comfy'" in result.stderr


def test_save_quit_then_resume_continues_from_latest(job):
    job.config.update(epochs=5)
    job.scenario["trainer"].update(seconds_per_step=0.05)
    proc = subprocess.Popen(job.command(), cwd=job.checkout, env=job.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("steps: 5 "):
            [run_dir] = job.run_dirs()
            (run_dir / "save_quit").touch()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert not any("TRAINING COMPLETE!" in line for line in lines)
    [run_dir] = job.run_dirs()
    latest = (run_dir / "latest").read_text()
    stopped_at = int(latest.removeprefix("global_step"))
    assert 5 <= stopped_at < 20 and not (run_dir / "save_quit").exists()

    job.scenario["trainer"].update(seconds_per_step=0.0)
    result = job.run("--resume_from_checkpoint")
    assert result.returncode == 0, result.stderr
    epoch = stopped_at // 4 + 1
    assert f"Resuming training from checkpoint. Resuming at epoch: {epoch}, step: {stopped_at + 1}" in result.stdout
    assert f"steps: {stopped_at + 1} loss" in result.stdout and f"steps: {stopped_at} loss" not in result.stdout
    assert result.stdout.rstrip().endswith("TRAINING COMPLETE!")
    assert job.run_dirs() == [run_dir]  # continued in the same run dir
    assert (run_dir / "latest").read_text() == "global_step20"
    events = sorted(run_dir.glob("events.out.tfevents.*"))
    assert len(events) == 2
    val = [s for s, _ in scalars(run_dir)["val/loss"]]
    assert val.count(0) == 1  # no eval before the first step on resume
    assert {4, 8, 12, 16, 20} <= set(val)


def test_resume_by_run_dir_name_and_missing_latest(job):
    job.config.update(epochs=1, save_every_n_steps=2)
    assert job.run().returncode == 0
    [run_dir] = job.run_dirs()
    job.config.update(epochs=2)
    result = job.run("--resume_from_checkpoint", run_dir.name)
    assert result.returncode == 0 and "Resuming at epoch: 2, step: 5" in result.stdout
    (run_dir / "latest").unlink()
    result = job.run("--resume_from_checkpoint")
    assert result.returncode != 0 and "Unable to find latest file" in result.stderr


def test_wandb_key_from_the_environment(job):
    job.config["monitoring"] = {"enable_wandb": True, "wandb_api_key": "", "wandb_tracker_name": "loras",
                                "wandb_run_name": "alice-v1"}
    job.config.update(epochs=1)
    result = job.run(WANDB_API_KEY="env-secret-123")
    assert result.returncode == 0, result.stderr
    assert re.search(r"View run alice-v1 at: https://wandb\.ai/\S+/loras/runs/\w+", result.stdout)
    assert "env-secret-123" not in result.stdout + result.stderr
    [run_dir] = job.run_dirs()
    assert not any("env-secret-123" in p.read_text(errors="ignore") for p in run_dir.rglob("*") if p.is_file())


def test_wandb_key_in_the_toml_lands_in_every_checkpoint(job):
    # the real tool copies its TOML everywhere: this is why pistachio keeps keys out of the TOML
    job.config["monitoring"] = {"enable_wandb": True, "wandb_api_key": "toml-secret-456",
                                "wandb_tracker_name": "loras", "wandb_run_name": "r"}
    job.config.update(epochs=1)
    assert job.run().returncode == 0
    [run_dir] = job.run_dirs()
    assert "toml-secret-456" in (run_dir / "epoch1" / "wan_lora.toml").read_text()


def test_sigterm_stops_training(job):
    job.config.update(epochs=100)
    job.scenario["trainer"].update(seconds_per_step=0.05)
    proc = subprocess.Popen(job.command(), cwd=job.checkout, env=job.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("steps: 2 "):
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    proc.stdout.close()
    proc.stderr.close()


def test_startup_caches_then_loads_then_makes_the_run_folder_like_upstream(job):
    """train.py@8f83dbf: dataset caching (utils/dataset.py lines) before the diffusion model load and the run
    folder; "Global batch size" after it; --cache_only stops after caching, with no run folder."""
    job.scenario["trainer"]["seconds_to_load_model"] = 0.0
    result = job.run("--cache_only")
    assert result.returncode == 0, result.stderr
    assert not job.output.exists() or job.run_dirs() == []
    out = result.stdout
    marks = ["Grouped metadata is not cached. Computing ungrouped metadata and then grouping.",
             f"caching latents: {job.data}", "caching latents: (1.26, 1)", "caching latents: (1.26, ",
             "Building iteration order", f"caching text embeddings: {job.data}",
             f"caching latents: {job.evaldata}"]
    assert [out.index(m) for m in marks] == sorted(out.index(m) for m in marks)
    assert "Global batch size" not in out
    full = job.run()
    assert full.returncode == 0, full.stderr
    assert full.stdout.index(f"caching text embeddings: {job.data}") < full.stdout.index("Global batch size = 1") \
        < full.stdout.index("steps: 1 ")


def test_wan_without_flash_attn_fails_at_the_first_forward_like_upstream(job):
    """models/wan/attention.py@8f83dbf: `assert FLASH_ATTN_2_AVAILABLE` in the first transformer forward (here the
    eval before the first step), after the model load and the caching were done; row T5 of tests/upstream."""
    job.bin_dir = job.image.bin_dir  # the image as RunPod ships it: no flash-attn
    result = job.run()
    assert result.returncode != 0
    assert result.stderr.rstrip().splitlines()[-1] == "AssertionError"
    assert "Global batch size = 1" in result.stdout and "steps: 1 " not in result.stdout
    assert job.run_dirs()  # the run folder was made before it failed: money spent, nothing trained


def test_whole_path_inside_a_pod(job, repos, pod_image, tmp_path):
    """Clone with submodules, pip install, and train over SSH in a sandbox pod, as the tool does."""
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host = PodHost(tmp_path / "sandbox", pod_image)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job.config.update(epochs=1)
    job.write()
    wheel, _ = pypi.build_wheel(pypi.STANDIN_WHEELS["flash-attn"], tmp_path / "wheels")
    host.start("podtrain", ssh_port=port, public_key=key.with_suffix(".pub").read_text(), workspace=tmp_path / "ws",
               env={"RUNPOD_POD_ID": "podtrain", "PISTACHIO_STANDIN_SCENARIO": str(job.root / "scenario.json")})
    try:
        script = (
            'set -e; cd "$PISTACHIO_WORKSPACE"; '
            f"git clone -q --recurse-submodules {repos['diffusion-pipe'].url} diffusion-pipe; cd diffusion-pipe; "
            "pip install -q -r requirements.txt; "
            f"pip install -q --no-deps {wheel}; "  # what the bootstrap's flash-attn step does
            'NCCL_P2P_DISABLE="1" NCCL_IB_DISABLE="1" deepspeed --num_gpus=1 train.py --deepspeed '
            f"--config {job.root / 'wan_lora.toml'}"
        )
        t0 = time.monotonic()
        result = subprocess.run(["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o",
                                 "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                                 f"{pod_user()}@127.0.0.1", script], capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.rstrip().endswith("TRAINING COMPLETE!")
        assert time.monotonic() - t0 < 120
        assert (tmp_path / "ws" / "diffusion-pipe" / "submodules" / "ComfyUI" / "comfy").is_dir()
        [run_dir] = job.run_dirs()
        assert (run_dir / "epoch1" / "adapter_model.safetensors").is_file()  # one epoch: its last save is epochE
    finally:
        host.stop("podtrain")
    assert host.processes("podtrain") == []
