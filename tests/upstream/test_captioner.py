"""joy-caption-batch batch-alpha2.py (MNeMoNiCuZ/joy-caption-batch@80dd589): what it prints, and that our client
reads exactly that. Rows C1-C3 of tests/upstream/README.md."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from PIL import Image

from pistachio_infra.pipeline.caption import captioner_problems, written_caption


def run_captioner(repo: Path, image, hub: str, tmp_path: Path, *args: str, fail: list[str] | None = None):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"captioner": {"seconds_per_image": 0, "fail_images": fail or []}}))
    env = {"PATH": f"{image.bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_ENDPOINT": hub,
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "PISTACHIO_STANDIN_SCENARIO": str(scenario)}
    # the pod runs it detached with stdout and stderr in one log: read them the same way
    return subprocess.run(["python", "batch-alpha2.py", *args], cwd=repo, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)


def images(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (32 + i, 32), (200, 30, 30)).save(folder / name)
    return folder


def test_c1_caption_written_lines_are_what_the_client_counts(standin_repos, pod_image, joycaption_hub, tmp_path):
    folder = images(tmp_path / "in", "a.png", "b.png", "c.png")
    result = run_captioner(standin_repos["joy-caption-batch"], pod_image, joycaption_hub, tmp_path,
                           "--input-dir", str(folder), "--print-captioning-status")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    written = [p for p in map(written_caption, lines) if p is not None]
    assert sorted(Path(p).name for p in written) == ["a.txt", "b.txt", "c.txt"]
    assert all(Path(p).is_file() for p in written)
    assert f"Caption written to '{folder / 'a.txt'}'" in lines  # the exact upstream string, quotes included
    assert captioner_problems(lines) == []


def test_c1_without_print_captioning_status_nothing_is_announced(standin_repos, pod_image, joycaption_hub,
                                                                   tmp_path):
    folder = images(tmp_path / "in", "a.png")
    result = run_captioner(standin_repos["joy-caption-batch"], pod_image, joycaption_hub, tmp_path,
                           "--input-dir", str(folder))
    assert (folder / "a.txt").is_file()
    assert not [line for line in result.stdout.splitlines() if written_caption(line)]


def test_c2_failures_are_logged_with_a_timestamp_and_the_client_echoes_them(standin_repos, pod_image,
                                                                              joycaption_hub, tmp_path):
    folder = images(tmp_path / "in", "a.png", "b.png")
    result = run_captioner(standin_repos["joy-caption-batch"], pod_image, joycaption_hub, tmp_path,
                           "--input-dir", str(folder), "--batch-processing-count", "1", "--print-captioning-status",
                           fail=["b.png"])
    assert result.returncode == 0  # C3: exit status 0 even though a caption failed
    lines = result.stdout.splitlines()
    failed = [line for line in lines if "Generation failed" in line]
    assert len(failed) == 1 and " ERROR: Generation failed: " in failed[0]
    assert failed[0][:4].isdigit()  # "%(asctime)s %(levelname)s: %(message)s"
    assert [m for m in captioner_problems(lines) if m.startswith("Generation failed: CUDA out of memory")]
    assert [Path(p).name for p in map(written_caption, lines) if p] == ["a.txt"]


def test_c3_a_crash_in_main_is_logged_and_still_exits_zero(standin_repos, pod_image, joycaption_hub, tmp_path):
    folder = images(tmp_path / "in", "a.png")
    result = run_captioner(standin_repos["joy-caption-batch"], pod_image, joycaption_hub, tmp_path,
                           "--input-dir", str(folder), "--model", "fancyfeast/no-such-model")
    assert result.returncode == 0
    assert [m for m in captioner_problems(result.stdout.splitlines()) if m.startswith("An error occurred: ")]
