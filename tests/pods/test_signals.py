"""Signals during a command unwind it, and never cut its teardown short: a real child process gets real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent(
    """
    import sys, time
    from pistachio_infra.signals import interruptible, shielded
    def work_then_teardown():
        with interruptible():
            try:
                print("working", flush=True)
                time.sleep(30)
            finally:
                with shielded("tearing down"):
                    print("teardown started", flush=True)
                    sys.stdin.readline()  # the teardown lasts until the test has sent its signals
                    print("teardown finished", flush=True)
    try:
        work_then_teardown()
    except KeyboardInterrupt:
        print("exit: KeyboardInterrupt", flush=True); sys.exit(130)
    except SystemExit as exc:
        print(f"exit: SystemExit {exc.code}", flush=True); raise
    """
)


def start_child():
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=os.environ,
    )
    assert proc.stdout.readline().strip() == "working"
    return proc


def wait_noted(proc) -> str:  # type: ignore[no-untyped-def]
    """Read the child's stderr up to its next "received: still tearing down; it finishes first" line."""
    while line := proc.stderr.readline():
        if "it finishes first" in line:
            return line
    raise AssertionError(f"the child ended (exit {proc.wait()}) before it noted the signal")


@pytest.mark.parametrize(
    ("signals", "exit_line", "code"),
    [
        ([signal.SIGINT, signal.SIGINT, signal.SIGINT], "exit: KeyboardInterrupt", 130),
        ([signal.SIGTERM, signal.SIGTERM], "exit: SystemExit 143", 143),
        ([signal.SIGINT, signal.SIGTERM], "exit: KeyboardInterrupt", 130),
    ],
)
def test_later_signals_do_not_skip_the_teardown(signals, exit_line, code):
    proc = start_child()
    proc.send_signal(signals[0])
    assert proc.stdout.readline().strip() == "teardown started"
    for sig in signals[1:]:  # Ctrl-C again (and again) while the pod is being terminated
        proc.send_signal(sig)
        assert signal.Signals(sig).name in wait_noted(proc)
    out, _ = proc.communicate("\n", timeout=20)  # the teardown ends
    assert out.splitlines() == ["teardown finished", exit_line]
    assert proc.returncode == code


def test_a_second_signal_right_after_the_first_cannot_skip_teardown():
    proc = start_child()
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # no pause: lands while the first is still unwinding
    out, _ = proc.communicate("\n", timeout=20)  # (two signals that close together may arrive as one)
    assert out.splitlines() == ["teardown started", "teardown finished", "exit: KeyboardInterrupt"]


def test_signal_during_a_clean_teardown_stops_the_program_after_it():
    from pistachio_infra.signals import interruptible, shielded

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the test runner was started in the background
    done = []
    with pytest.raises(KeyboardInterrupt), interruptible(), shielded():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append("teardown")
    assert done == ["teardown"]
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
