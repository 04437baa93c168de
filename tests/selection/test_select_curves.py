"""The selection rule on synthetic curves with known answers, read back from real event files and safetensors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pistachio_infra.errors import ConfigError, PistachioError
from pistachio_infra.selection.choose import select_checkpoint

from .selection_runs import (
    Events,
    exp_plateau,
    from_values,
    noisy,
    save_lora,
    slow_decay,
    u_curve,
    write_epoch_run,
    write_run,
)

STEPS = range(10, 201, 10)


def true_earliest_within(curve, tolerance: float) -> int:
    low = min(curve(s) for s in STEPS)
    return next(s for s in STEPS if curve(s) <= low * (1 + tolerance))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "20250212_07-06-40"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_converge_picks_a_step_on_the_plateau(run_dir, seed):
    write_run(run_dir, noisy(exp_plateau, 0.01, seed))
    sel = select_checkpoint(run_dir)
    assert sel.verdict == "converged"
    # the truth: within 1% of the minimum from step 130; 1% noise may move the choice a little either way
    assert exp_plateau(sel.step) <= exp_plateau(200) * 1.02
    assert 110 <= sel.step <= sel.minimum_step
    assert sel.checkpoint_dir == run_dir / f"step{sel.step}"
    assert 0.004 < sel.noise / 0.08 < 0.02  # the estimated noise is about the 1% that was added


def test_clean_converge_matches_the_true_earliest_step_within_tolerance(run_dir):
    write_run(run_dir, exp_plateau)
    sel = select_checkpoint(run_dir, tolerance=0.01)
    assert sel.step == true_earliest_within(exp_plateau, 0.01) == 130
    assert sel.minimum_step == 200
    assert sel.verdict == "converged"


def test_plateau_prefers_the_earliest_step_within_tolerance(run_dir):
    def plateau(step):
        return 0.14 - 0.0006 * step if step < 100 else 0.08

    write_run(run_dir, plateau)
    assert select_checkpoint(run_dir, tolerance=0.01).step == 110  # smoothing still lifts step 100 by 1.9%
    assert select_checkpoint(run_dir, tolerance=0.03).step == 100
    assert select_checkpoint(run_dir, tolerance=0.0).verdict == "converged"


def test_noisy_plateau_is_converged_and_chosen_early(run_dir):
    write_run(run_dir, noisy(lambda s: 0.14 - 0.0006 * s if s < 100 else 0.08, 0.005, seed=3))
    sel = select_checkpoint(run_dir)
    assert sel.verdict == "converged"
    assert 100 <= sel.step <= 120  # not wherever the noise happens to dip lowest on the long plateau


@pytest.mark.parametrize("spike_step", [60, 150, 200])
@pytest.mark.parametrize("direction", [-1, +1])
def test_single_spike_is_never_chosen_and_changes_nothing(run_dir, spike_step, direction):
    def spiked(step):
        return exp_plateau(step) * (1 + 0.4 * direction) if step == spike_step else exp_plateau(step)

    write_run(run_dir, spiked)
    sel = select_checkpoint(run_dir)
    assert sel.step == 130  # the answer without the spike
    assert sel.verdict == "converged"
    spike_row = next(r for r in sel.rows if r.step == spike_step)
    assert abs(spike_row.eval_loss / exp_plateau(spike_step) - 1) == pytest.approx(0.4)
    assert abs(spike_row.smoothed / exp_plateau(spike_step) - 1) < 0.05  # the median dropped it


def test_overfit_is_overtrained_and_the_minimum_is_chosen(run_dir):
    write_run(run_dir, u_curve)
    sel = select_checkpoint(run_dir, tolerance=0.0)
    assert (sel.step, sel.minimum_step, sel.verdict) == (120, 120, "overtrained")
    assert sel.overtrained_from is not None and sel.overtrained_from > 120
    assert "rises" in sel.message and "step 120" in sel.message
    # with the default tolerance the earlier, equally good step wins (truth: 110 is within 1% of the minimum)
    assert select_checkpoint(run_dir).step == true_earliest_within(u_curve, 0.01) == 110


@pytest.mark.parametrize("seed", [0, 1])
def test_noisy_overfit(run_dir, seed):
    write_run(run_dir, noisy(u_curve, 0.005, seed))
    sel = select_checkpoint(run_dir)
    assert sel.verdict == "overtrained"
    assert 100 <= sel.step <= 130
    assert 110 <= sel.minimum_step <= 130


@pytest.mark.parametrize("seed", [0, 1])
def test_never_converging_is_undertrained_and_the_last_step_is_chosen_with_a_warning(run_dir, seed):
    write_run(run_dir, noisy(slow_decay, 0.005, seed))
    sel = select_checkpoint(run_dir)
    assert (sel.step, sel.verdict) == (200, "undertrained")
    assert sel.warnings and "still falling" in sel.warnings[0]
    assert "train longer" in sel.message


def test_flat_end_is_not_undertrained_even_if_the_last_point_is_lowest(run_dir):
    values = [0.14, 0.12, 0.10, 0.09, 0.085, 0.082, 0.0805, 0.0803, 0.0802, 0.0801, 0.0800]
    write_run(run_dir, from_values(values), steps=100)
    sel = select_checkpoint(run_dir)
    assert sel.verdict == "converged"
    assert sel.step < 100


def test_step_zero_has_no_lora_and_is_never_chosen(run_dir):
    # training only made things worse: the eval before the first step is the lowest point
    write_run(run_dir, lambda s: 0.07 + 0.0001 * s)
    sel = select_checkpoint(run_dir)
    assert sel.step == 10
    assert sel.rows[0].step == 0 and not sel.rows[0].has_lora
    assert sel.verdict == "overtrained"


def test_different_cadences_map_only_saved_steps_and_say_so(run_dir):
    write_run(run_dir, u_curve, every=10, save_every=20)
    sel = select_checkpoint(run_dir, tolerance=0.0)
    assert sel.step == 120
    assert sorted(sel.checkpoints) == list(range(20, 201, 20))
    assert [r.step for r in sel.rows if r.has_lora] == list(range(20, 201, 20))
    assert len(sel.rows) == 21  # every eval point is in the table, step 0 included
    assert any("cadences differ" in n for n in sel.notes)


def test_saves_between_evals_leave_no_candidate_and_say_how_to_fix(run_dir):
    write_run(run_dir, u_curve, every=10, save_every=15)  # saves at 15, 45, …: only 30, 60, … have an eval
    sel = select_checkpoint(run_dir, tolerance=0.0)
    assert sel.step % 30 == 0
    assert any("step15" in n for n in sel.notes)


def test_no_eval_loss_is_a_clear_error(run_dir):
    run_dir.mkdir(parents=True)
    events = Events(run_dir)
    for step in range(1, 21):
        events.scalar("train/loss", 0.1, step)
    events.close()
    save_lora(run_dir / "step20", 20)
    with pytest.raises(PistachioError) as err:
        select_checkpoint(run_dir)
    text = err.value.one_line()
    assert "no eval loss" in text and "eval_datasets" in text and "eval_every_n_steps" in text


def test_no_event_files_and_output_dir_instead_of_run_dir(tmp_path, run_dir):
    with pytest.raises(ConfigError, match="no TensorBoard event files"):
        select_checkpoint(tmp_path)  # empty
    write_run(run_dir, u_curve)
    with pytest.raises(ConfigError, match="holds run directories") as err:
        select_checkpoint(tmp_path)
    assert str(run_dir) in err.value.one_line()


def test_eval_name_is_found_or_must_be_chosen(run_dir):
    write_run(run_dir, u_curve, eval_name="holdout")
    assert select_checkpoint(run_dir).eval_name == "holdout"
    assert select_checkpoint(run_dir, eval_name="holdout/loss").eval_name == "holdout"
    with pytest.raises(ConfigError, match="holdout"):
        select_checkpoint(run_dir, eval_name="val")
    events = Events(run_dir, suffix=".second")
    events.scalar("faces/loss", 0.1, 10)
    events.close()
    with pytest.raises(ConfigError, match="--eval-name"):
        select_checkpoint(run_dir)


def test_resumed_run_uses_the_latest_value_of_a_step_logged_twice(run_dir):
    write_run(run_dir, u_curve)
    # a resumed run (second event file) logged steps 150-200 again with different values
    events = Events(run_dir, suffix=".resumed")
    events.clock += 10_000
    for step in range(150, 201, 10):
        events.scalar("val/loss", 0.05 if step == 160 else 0.2, step)
    events.close()
    sel = select_checkpoint(run_dir, tolerance=0.0)
    by_step = {r.step: r.eval_loss for r in sel.rows}
    assert by_step[160] == pytest.approx(0.05) and by_step[150] == pytest.approx(0.2)
    assert len(sel.rows) == 21


def test_epoch_folders_map_to_the_step_that_ended_the_epoch(run_dir):
    values = {0: 0.14, 7: 0.11, 14: 0.09, 21: 0.08, 28: 0.08, 35: 0.085, 42: 0.10}
    write_epoch_run(run_dir, values.__getitem__)
    sel = select_checkpoint(run_dir, tolerance=0.0)
    assert sel.checkpoints == {7: "epoch1", 14: "epoch2", 21: "epoch3", 28: "epoch4", 35: "epoch5", 42: "epoch6"}
    assert (sel.step, sel.checkpoint_name) == (28, "epoch4")
    assert sel.checkpoint_dir == run_dir / "epoch4"


def test_a_lora_that_does_not_open_is_not_a_candidate(run_dir):
    write_run(run_dir, u_curve)
    (run_dir / "step120" / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00not json")
    sel = select_checkpoint(run_dir, tolerance=0.0)
    assert sel.step != 120 and 120 not in sel.checkpoints
    assert not next(r for r in sel.rows if r.step == 120).has_lora


def test_saved_folders_given_by_the_caller(run_dir):
    """The pipeline lists stepN folders on the pod and downloads only the event files."""
    write_run(run_dir, u_curve)
    sel = select_checkpoint(run_dir, saved_folders=["step100", "step150", "step200"], tolerance=0.0)
    assert sel.step == 100 and sorted(sel.checkpoints) == [100, 150, 200]


def test_two_points_are_inconclusive(run_dir):
    write_run(run_dir, from_values([0.14, 0.1, 0.09]), steps=20)
    sel = select_checkpoint(run_dir)
    assert (sel.verdict, sel.step) == ("inconclusive", 20)


def test_nan_losses_are_reported_and_skipped(run_dir):
    write_run(run_dir, lambda s: math.nan if s >= 150 else u_curve(s))
    sel = select_checkpoint(run_dir, tolerance=0.0)
    assert sel.step == 120
    assert any("NaN" in w for w in sel.warnings)


def test_tolerance_out_of_range(run_dir):
    with pytest.raises(ConfigError, match="tolerance"):
        select_checkpoint(run_dir, tolerance=1.5)


def test_eval_dataset_named_eval_is_found(run_dir):
    """pistachio's renderer names the eval dataset `eval`: tags eval/loss next to DiffusionPipe's eval/eval_time_sec."""
    write_run(run_dir, u_curve, eval_name="eval")
    events = Events(run_dir, suffix=".timing")
    events.scalar("eval/eval_time_sec", 3.2, 10)
    events.scalar("eval/loss_quantile_0.10", 0.2, 10)
    events.close()
    sel = select_checkpoint(run_dir, tolerance=0.0)
    assert (sel.eval_name, sel.step) == ("eval", 120)
