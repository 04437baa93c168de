"""`pistachio-infra select RUN_DIR` through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pistachio_infra.cli import cli

from .selection_runs import Events, noisy, slow_decay, u_curve, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))


def test_select_prints_table_choice_verdict_and_writes_the_plot(tmp_path):
    run_dir = write_run(tmp_path / "20250212_07-06-40", u_curve)
    result = CliRunner().invoke(cli, ["select", str(run_dir)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "val/loss by step" in out
    assert "step110  ← chosen" in out
    assert "overtrained" in out
    assert f"chosen: step 110 → {run_dir / 'step110'}" in out
    assert out.count("step") > 20  # every saved step is in the table
    plot = run_dir / "loss.png"
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert plot.stat().st_size > 10_000


def test_select_options(tmp_path):
    run_dir = write_run(tmp_path / "run", u_curve, eval_name="holdout")
    plot = tmp_path / "plots" / "mine.png"
    result = CliRunner().invoke(
        cli, ["select", str(run_dir), "--eval-name", "holdout", "--tolerance", "0", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    assert "holdout/loss by step" in result.output and "step120  ← chosen" in result.output
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert not (run_dir / "loss.png").exists()


def test_select_undertrained_warns(tmp_path):
    run_dir = write_run(tmp_path / "run", noisy(slow_decay, 0.005))
    result = CliRunner().invoke(cli, ["select", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "undertrained" in result.output
    assert "chosen: step 200" in result.output


def test_select_without_eval_loss_is_one_line_error(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    events = Events(run_dir)
    events.scalar("train/loss", 0.1, 1)
    events.close()
    proc = subprocess.run(
        [sys.executable, "-m", "pistachio_infra.cli", "select", str(run_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no eval loss")
    assert "eval_every_n_steps equal to save_every_n_steps" in lines[0]


def test_select_rejects_a_bad_tolerance(tmp_path):
    result = CliRunner().invoke(cli, ["select", str(tmp_path), "--tolerance", "2"])
    assert result.exit_code == 2
    assert "tolerance" in result.output.lower()


def test_select_module_imports_nothing_heavy():
    code = (
        "import sys; import pistachio_infra.commands.select\n"
        "print([m for m in ('matplotlib', 'tensorboard', 'numpy', 'rich.console') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_plot_is_also_written_for_a_clean_run(tmp_path):
    from pistachio_infra.selection.choose import plot_selection, select_checkpoint

    run_dir = write_run(tmp_path / "run", u_curve)
    path = plot_selection(select_checkpoint(run_dir), Path(tmp_path / "x" / "loss.png"))
    assert path.read_bytes()[:8] == PNG_MAGIC
