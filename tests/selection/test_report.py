"""report.md + loss.png + configs/ + captions/ under runs/<job>/<timestamp>/, with no secret in any of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pistachio_infra.pipeline.report import ReportData, SecretInReportError, write_report
from pistachio_infra.selection.choose import select_checkpoint

from .selection_runs import u_curve, write_run

FAKE_WANDB = "0123456789abcdef0123456789abcdef01234567"
FAKE_HF = "hf_" + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh"  # fake; split so secret scanners do not flag it
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_API_KEY", FAKE_WANDB)
    monkeypatch.setenv("HF_TOKEN", FAKE_HF)


def make_data(tmp_path: Path, **overrides) -> ReportData:
    run_dir = write_run(tmp_path / "pod" / "20250212_07-06-40", u_curve)
    configs = tmp_path / "rendered"
    configs.mkdir()
    (configs / "train.toml").write_text(
        "output_dir = '/workspace/runs/mira'\nepochs = 40\n\n[monitoring]\nenable_wandb = true\n"
        f"wandb_api_key = '{FAKE_WANDB}'\nwandb_tracker_name = 'pistachio'\n"
    )
    (configs / "dataset.toml").write_text("resolutions = [512]\n[[directory]]\npath = '/workspace/data/train'\n")
    (configs / "joycaption.env").write_text("HF_TOKEN=hf_" + "secretthatisnotinenvironment12345678\nBATCH=8\n")
    captions = tmp_path / "captions"
    captions.mkdir()
    for i in range(6):
        (captions / f"img{i:02d}.txt").write_text(f"mira_tok, a woman with red hair, photo {i}")
    (captions / "img06.txt").write_text("a woman forgot the trigger")
    data = ReportData(
        job="mira",
        character="Mira",
        trigger="mira_tok",
        gpu_class="RTX A6000",
        gpu_requested="L40S",
        pod_id="pod-abc123",
        selection=select_checkpoint(run_dir),
        configs=sorted(configs.iterdir()),
        captions_dir=captions,
        cost_estimated_usd=1.8,
        cost_billed_usd=1.62,
        stage_seconds={"preflight": 1.2, "provision": 95.0, "train": 3725.4, "teardown": 4.1},
        lock={"diffusion_pipe": {"commit": "a" * 40}, "image": "runpod/pytorch:2.4.0"},
        lora_path="/comfy/models/loras/mira_mira_tok_step110.safetensors",
        wandb_url="https://wandb.ai/team/pistachio/runs/x1",
        started_at=datetime(2025, 2, 12, 7, 0, 0, tzinfo=UTC),
        finished_at=datetime(2025, 2, 12, 8, 10, 5, tzinfo=UTC),
    )
    for key, value in overrides.items():
        setattr(data, key, value)
    return data


def test_report_has_every_section_and_its_files(tmp_path):
    report = write_report(tmp_path / "project", make_data(tmp_path))
    folder = tmp_path / "project" / "runs" / "mira" / "20250212_08-10-05"
    assert report == folder / "report.md"
    text = report.read_text()
    for section in ("# mira: LoRA report", "## Checkpoint selection", "## Cost", "## Timings", "## Captions",
                    "## Rendered configs", "## Environment lock"):
        assert section in text
    assert "Trigger word: `mira_tok`" in text
    assert "GPU class rented: RTX A6000 (asked for L40S" in text
    assert "pod-abc123" in text and "mira_mira_tok_step110.safetensors" in text
    assert "**step 110** (`step110`)" in text and "**overtrained**" in text
    assert "| 110 | 0.08042 |" in text and "step110 ← chosen" in text
    assert "| $1.80 | $1.62 | −$0.18 |" in text
    assert "| train | 1h02m05s |" in text and "| **total** |" in text
    assert "7 caption(s)" in text and "Not starting with `mira_tok`: img06.txt." in text
    assert "![train and eval loss](loss.png)" in text
    assert '"commit": "' + "a" * 40 in text  # a git commit is not mistaken for a key
    assert (folder / "loss.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (folder / "configs").iterdir()) == ["dataset.toml", "joycaption.env", "train.toml"]
    assert len(list((folder / "captions").glob("*.txt"))) == 7


def test_no_secret_reaches_any_file_of_the_report(tmp_path):
    write_report(tmp_path / "project", make_data(tmp_path))
    folder = tmp_path / "project" / "runs" / "mira"
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert FAKE_WANDB.encode() not in data, path
            assert FAKE_HF.encode() not in data, path
            assert b"hf_secretthatisnotinenvironment" not in data, path
    train = next(folder.rglob("train.toml")).read_text()
    assert "wandb_api_key = ''" in train and "wandb_tracker_name = 'pistachio'" in train


def test_a_key_that_cannot_be_scrubbed_refuses_the_report(tmp_path):
    data = make_data(tmp_path)
    (data.captions_dir / "img07.txt").write_text("mira_tok, rpa_" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123 written on a sign")
    with pytest.raises(SecretInReportError, match="looks like a key"):
        write_report(tmp_path / "project", data)
    assert not (tmp_path / "project" / "runs" / "mira" / "20250212_08-10-05").exists()


def test_minimal_report_before_training_finished(tmp_path):
    data = ReportData(job="bad/job name", character="Mira", trigger="mira_tok", gpu_class="RTX 4090")
    report = write_report(tmp_path, data)
    assert report.parent.parent.name == "bad_job_name"
    text = report.read_text()
    assert "No selection was made" in text and "None recorded." in text
    assert not (report.parent / "loss.png").exists()
