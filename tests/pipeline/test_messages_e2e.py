"""Issue 19.7 and 19.8, through the CLI: messages that tell the truth and can be acted on."""

from __future__ import annotations

import pytest

from .conftest import cli, write_project

pytestmark = pytest.mark.slow


def test_the_no_capacity_hint_names_an_option_train_has_and_following_it_works(sandbox, sandbox_admin, tmp_path):
    sandbox_admin.inject("no_capacity", gpu="NVIDIA RTX A6000", visible=False)
    project = write_project(tmp_path / "proj")
    refused = cli("train", "pip", "--project", str(project), "--gpu", "a6000")
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert "no capacity" in line and "--gpu a6000,auto" in line
    help_text = cli("train", "--help").stdout
    assert "--gpu-fallback" not in help_text  # so the hint must not send `train` users there
    done = cli("train", "pip", "--project", str(project), "--gpu", "a6000,auto")  # as the hint says
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GPU a6000 → " in done.stdout
    assert "(the first choice a6000 had no capacity)" in done.stdout


@pytest.mark.parametrize("overrides", [{"alpha": 16}, {"adapter": {"alpha": 16}}])
def test_overrides_go_through_diffusion_pipes_rules(sandbox, sandbox_admin, tmp_path, overrides):
    project = write_project(tmp_path / "proj", overrides=overrides)
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 3, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "alpha" in line and "breaks DiffusionPipe's rules" in line and "fix the job's overrides" in line
    assert sandbox_admin.pods() == []


def test_a_huge_image_gives_one_clear_line_not_a_pillow_warning(tmp_path):
    from PIL import Image

    from pistachio_infra.dataset.demo import generate_dataset

    generate_dataset(tmp_path / "set", 6)
    Image.new("L", (12000, 12000)).save(tmp_path / "set" / "huge.png")
    done = cli("dataset", "check", str(tmp_path / "set"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DecompressionBomb" not in done.stdout + done.stderr
    assert [line for line in done.stdout.splitlines() if "huge.png" in line] == [
        "warning: huge.png: 12000x12000 is very large (slow; downscale it)"]
