"""Issue 15 item 1: train and up print the plan (GPU class, data center, $/h, duration, $ range, limit) and ask on
a terminal; --yes skips the question; without a terminal and without --yes they refuse in one line, renting
nothing. The terminal is a real pty (pexpect); the refusal runs with stdin/stdout as pipes."""

from __future__ import annotations

import os
import re
import subprocess

import pexpect
from helpers import CLI, default_sigint, live_pods

from .conftest import write_project

PLAN_LINES = ("plan: ", "  GPU        ", "  cost       ", "  limit      ")


def _spawn(*args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    return pexpect.spawn(CLI, list(args), env={**os.environ, "COLUMNS": "200", **(env or {})}, encoding="utf-8",
                         preexec_fn=default_sigint,
                         timeout=120)


def test_train_asks_on_a_terminal_and_a_no_rents_nothing(sandbox, sandbox_admin, tmp_path):
    project = write_project(tmp_path / "proj")
    child = _spawn("train", "pip", "--project", str(project))
    child.expect(r"Rent it\? \[y/N\]")
    shown = child.before
    for line in PLAN_LINES:
        assert line in shown, shown
    assert re.search(r"GPU +a6000 in \S+ at \$\d+\.\d+/h", shown), shown  # the first class of the job's order
    assert re.search(r"cost +\$[\d.]+–\$[\d.]+ \(expected \$[\d.]+\)", shown), shown
    assert re.search(r"duration +about \S+ \(\S+–\S+\)", shown), shown
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1, child.before
    assert "nothing was rented" in child.before
    assert sandbox_admin.pods() == []


def test_without_a_terminal_train_up_and_lock_refuse_in_one_line(sandbox, sandbox_admin, tmp_path):
    project = write_project(tmp_path / "proj")
    for args in (["train", "pip", "--project", str(project)], ["up", "--gpu", "a6000", "--no-models"],
                 ["lock", "--out", str(tmp_path / "pistachio.lock")]):
        done = subprocess.run([CLI, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr  # a usage error: the command needs --yes here
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "no terminal to ask" in errors[0] and "--yes" in errors[0], done.stderr
        assert "\x1b[" not in done.stderr  # piped: no colour codes
        assert all(line in done.stdout + done.stderr for line in PLAN_LINES)  # the plan is shown all the same
    assert sandbox_admin.pods() == []


def test_up_rents_after_yes_on_a_terminal(sandbox, sandbox_admin):
    child = _spawn("up", "--gpu", "a6000", "--no-models", "--no-bootstrap", "--max-hours", "1", "--label", "ask",
                   env={"NO_COLOR": "1"})
    child.expect(r"Rent it\? \[y/N\]")
    assert "watchdog ends the pod after 1 h" in child.before
    child.sendline("y")
    child.expect(r"ready(?:\x1b\[[0-9;]*m)*\s+(pistachio-up-ask-[0-9a-f]{6})")  # bold stays under NO_COLOR
    name = child.match.group(1)
    child.expect(pexpect.EOF)
    assert "\x1b[3" not in child.before  # NO_COLOR on a terminal: no colours
    child.close()
    assert child.exitstatus == 0
    assert len(live_pods(sandbox_admin)) == 1
    down = subprocess.run([CLI, "down", name], capture_output=True, text=True, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert live_pods(sandbox_admin) == []


def test_pistachio_toml_is_found_in_a_parent_folder(sandbox, sandbox_admin, tmp_path):
    """Issue 15 item 6: like Pulumi.yaml, the nearest pistachio.toml above the working folder is the project."""
    write_project(tmp_path / "proj")
    below = tmp_path / "proj" / "notes" / "deeper"
    below.mkdir(parents=True)
    done = subprocess.run([CLI, "train", "pip"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=below, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr  # got as far as the question: no terminal to ask
    assert "plan: train pip (" in done.stdout and "8 images" in done.stdout
    assert sandbox_admin.pods() == []
