"""The stand-in joy-caption-batch `batch-alpha2.py`: downloads its model from the sandbox HF hub with the real
huggingface_hub client, writes prepend + caption + append by the real output-path rules, and exits 0 even when
captions failed (the tool must check the files)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from pistachio_infra.sandbox import hf
from pistachio_infra.sandbox.image import PodImage
from pistachio_infra.sandbox.standins import build_repos

MODEL = "fancyfeast/llama-joycaption-alpha-two-hf-llava"


@pytest.fixture(scope="module")
def captioner(tmp_path_factory) -> Path:
    pins = build_repos(tmp_path_factory.mktemp("git"))
    dest = tmp_path_factory.mktemp("checkout") / "joy-caption-batch"
    subprocess.run(["git", "clone", "-q", pins["joy-caption-batch"].url, str(dest)], check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    hf.create_repo(root, MODEL, {"config.json": json.dumps({"model_type": "llava"}).encode(),
                                 "model.safetensors": b"\0" * 4096})
    with hf.serve(root) as endpoint:
        yield endpoint


@pytest.fixture
def dataset(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "red.png")
    Image.new("RGB", (40, 80), (40, 70, 200)).save(folder / "blue.JPG")
    Image.new("RGB", (32, 32), (40, 160, 60)).save(folder / "sub" / "green.webp")
    (folder / "notes.md").write_text("not an image")
    return folder


def caption(captioner: Path, image: PodImage, hub: str, tmp_path: Path, *args: str,
            scenario: dict | None = None) -> subprocess.CompletedProcess:
    scenario_file = tmp_path / "scenario.json"
    scenario_file.write_text(json.dumps({"captioner": {"seconds_per_image": 0, **(scenario or {})}}))
    env = {"PATH": f"{image.bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_ENDPOINT": hub,
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "PISTACHIO_STANDIN_SCENARIO": str(scenario_file)}
    return subprocess.run(["python", "batch-alpha2.py", *args], cwd=captioner, env=env, capture_output=True,
                          text=True, timeout=120)


def test_captions_with_prepend_and_append_by_the_output_rules(captioner, pod_image, hub, dataset, tmp_path):
    out = tmp_path / "captions"
    result = caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(dataset), "--output-dir", str(out),
                     "--prepend-string", "ohwx woman, ", "--append-string", " END")
    assert result.returncode == 0, result.stderr
    assert "An error occurred" not in result.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.txt"))
    assert written == ["blue.txt", "red.txt", "sub/green.txt"]  # recursive, subfolders kept, always .txt
    red = (out / "red.txt").read_text()
    assert red.startswith("ohwx woman, A ") and red.endswith(" END") and "\n" not in red
    assert "64x48" in red and "red" in red.removeprefix("ohwx woman, ")
    assert "blue" in (out / "blue.txt").read_text() and "portrait" in (out / "blue.txt").read_text()
    assert "green" in (out / "sub" / "green.txt").read_text()
    # the model came through huggingface_hub into HF_HOME, from the sandbox hub
    assert list((tmp_path / "hf-home" / "hub").glob("models--fancyfeast--llama-joycaption-alpha-two-hf-llava"))


def test_default_output_is_next_to_the_images_and_deterministic(captioner, pod_image, hub, dataset, tmp_path):
    assert caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(dataset)).returncode == 0
    first = (dataset / "red.txt").read_text()
    assert caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(dataset)).returncode == 0
    assert (dataset / "red.txt").read_text() == first  # OVERWRITE=True rewrites, same caption


def test_failed_images_get_no_caption_and_exit_status_stays_zero(captioner, pod_image, hub, dataset, tmp_path):
    result = caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(dataset),
                     "--batch-processing-count", "1", scenario={"fail_images": ["blue.*"]})
    assert result.returncode == 0
    assert "ERROR: Generation failed: CUDA out of memory" in result.stderr
    assert (dataset / "red.txt").exists() and (dataset / "sub" / "green.txt").exists()
    assert not (dataset / "blue.txt").exists()


def test_a_failure_loses_its_whole_batch(captioner, pod_image, hub, dataset, tmp_path):
    # sorted order: blue.JPG, red.png | sub/green.webp — batches of 2, the first fails as a whole
    result = caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(dataset),
                     "--batch-processing-count", "2", scenario={"fail_images": ["blue.JPG"]})
    assert result.returncode == 0 and result.stderr.count("Generation failed") == 1
    assert not (dataset / "blue.txt").exists() and not (dataset / "red.txt").exists()
    assert (dataset / "sub" / "green.txt").exists()


def test_json_output_format_goes_into_the_txt_file(captioner, pod_image, hub, dataset, tmp_path):
    result = caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(dataset), "--output-format", "json",
                     "--prepend-string", "tok ")
    assert result.returncode == 0
    assert json.loads((dataset / "red.txt").read_text())["caption"].startswith("tok A ")


def test_model_download_failure_still_exits_zero(captioner, pod_image, hub, dataset, tmp_path):
    result = caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(dataset), "--model",
                     "fancyfeast/no-such-model")
    assert result.returncode == 0
    assert "ERROR: An error occurred" in result.stderr
    assert not list(dataset.rglob("*.txt"))


def test_no_images_found_exits_zero(captioner, pod_image, hub, tmp_path):
    (tmp_path / "empty").mkdir()
    result = caption(captioner, pod_image, hub, tmp_path, "--input-dir", str(tmp_path / "empty"))
    assert result.returncode == 0 and "WARNING: No images found" in result.stderr
