"""Bucket-aware planning end to end (row T6 of tests/upstream/README.md): the steps `configs for …` announces are
the steps the (stand-in) DiffusionPipe runs, and a dataset DiffusionPipe would gut is refused before any pod."""

from __future__ import annotations

import pytest
from PIL import Image

from .conftest import cli, write_project

pytestmark = pytest.mark.slow


def test_demo_dataset_estimated_steps_are_the_trained_steps(sandbox, sandbox_admin, tmp_path, state):
    # the demo's 24 images: 19 train, one square bucket at 512, batch 8 -> 16 kept: 2 steps per epoch (not 3)
    project = write_project(tmp_path / "proj", images=24, epochs=3, checkpoints=3)
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "~6 steps" in done.stdout and "3 epochs × 2 steps" in done.stdout
    assert state.result("render")["steps"] == state.result("train")["steps"] == 6


def test_two_shape_dataset_is_refused_in_preflight_with_no_pod(sandbox, sandbox_admin, tmp_path):
    project = write_project(tmp_path / "proj", images=10, num_repeats=1)
    for path in sorted((tmp_path / "proj" / "images").glob("*.png"))[:5]:
        with Image.open(path) as im:
            im.crop((0, 85, 512, 427)).save(path)  # 512x342: 3:2, the 1.587 bucket
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 3, done.stdout + done.stderr  # bad data (issue 15: usage 2, config/data 3)
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Processed dataset was empty" in line and "num_repeats = " in line
    assert "(512x342)" in line and "(512x512)" in line and "nothing was rented" in line
    assert sandbox_admin.pods() == []  # not one pod, ever
