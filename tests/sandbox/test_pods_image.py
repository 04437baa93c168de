"""The pod image stand-in: built once offline, reused, pip finds the stand-ins' requirements satisfied without a
network, and the `deepspeed` launcher runs a script the way DeepSpeed's does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pistachio_infra.sandbox.image import PodImage

STANDINS = Path(__file__).resolve().parents[2] / "pistachio_infra" / "sandbox" / "standins"


def run(image: PodImage, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": f"{image.bin_dir}:/usr/bin:/bin", "HOME": str(cwd or image.root)}
    return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_image_is_built_once_and_reused(pod_image):
    marker = pod_image.root / ".complete"
    stamp = marker.stat().st_mtime_ns
    again = PodImage.ensure(pod_image.root.parent)
    assert again == pod_image
    assert marker.stat().st_mtime_ns == stamp
    for name in ("python", "python3", "pip", "deepspeed", "hf", "tensorboard"):
        assert (pod_image.bin_dir / name).exists(), name


def test_image_python_imports_what_the_standins_need(pod_image):
    code = "import numpy, safetensors.numpy, PIL.Image, huggingface_hub, packaging, tomllib\n" \
           "from tensorboard.summary.writer.event_file_writer import EventFileWriter\nimport sys; print(sys.prefix)"
    result = run(pod_image, "python", "-c", code)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == pod_image.root


def test_pip_finds_standin_requirements_satisfied_offline(pod_image, tmp_path):
    requirements = [arg for repo in ("diffusion_pipe", "joy_caption_batch")
                    for arg in ("-r", str(STANDINS / repo / "requirements.txt"))]
    result = run(pod_image, "pip", "install", *requirements, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Requirement already satisfied" in result.stdout
    assert "Downloading" not in result.stdout and "Collecting" not in result.stdout


def test_pip_fails_fast_for_a_package_the_image_lacks(pod_image, tmp_path):
    result = run(pod_image, "pip", "install", "definitely-not-in-the-image-pkg", cwd=tmp_path)
    assert result.returncode != 0
    assert "No matching distribution" in result.stderr


def test_deepspeed_launcher_runs_the_script_like_deepspeed(pod_image, tmp_path):
    script = tmp_path / "show.py"
    script.write_text("import os, sys\nprint(sys.executable)\nprint(sys.argv[1:])\n"
                      "print(os.environ['RANK'], os.environ['LOCAL_RANK'], os.environ['WORLD_SIZE'], "
                      "os.environ['MASTER_PORT'])\n")
    result = run(pod_image, "deepspeed", "--num_gpus=1", "--master_port", "29511", "show.py", "--deepspeed",
                 "--config", "x.toml", "--resume_from_checkpoint", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-3] == str(pod_image.bin_dir / "python")
    assert lines[-2] == "['--local_rank=0', '--deepspeed', '--config', 'x.toml', '--resume_from_checkpoint']"
    assert lines[-1] == "0 0 1 29511"


def test_deepspeed_launcher_refuses_more_gpus_than_the_pod_has(pod_image, tmp_path):
    (tmp_path / "show.py").write_text("print('ran')\n")
    result = run(pod_image, "deepspeed", "--num_gpus=2", "show.py", cwd=tmp_path)
    assert result.returncode != 0 and "ran" not in result.stdout
