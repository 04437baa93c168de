"""Helpers shared by the test folders that drive pods in the sandbox (fixtures themselves live in conftest.py files).

Importable as `helpers` from any test module: pytest puts tests/ on sys.path for tests/conftest.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLI = str(Path(sys.executable).with_name("pistachio-infra"))

# Pod lifecycle and watchdog timings in seconds instead of minutes (tests/pods, tests/lock, tests/comfy).
# Polls are fast, so passing tests are fast. Deadlines (ready, terminate, reconnect) are only reached when
# something is wrong, so they are generous: a pod that needs 10-20 s to answer SSH on a loaded 2-core machine (several
# test workers, other builds) is slow, not stuck, and replacing it would make pod counts depend on the machine's
# load. Tests about a deadline firing set their own, short one.
POD_FAST_ENV = {
    "PISTACHIO_POD_POLL_S": "0.2",
    "PISTACHIO_POD_READY_TIMEOUT_S": "90",
    "PISTACHIO_POD_TERMINATE_TIMEOUT_S": "90",
    "PISTACHIO_POD_LOOKUP_S": "2",
    "PISTACHIO_WATCHDOG_POLL_S": "0.5",
    "PISTACHIO_WATCHDOG_HEARTBEAT_S": "0.5",
    "PISTACHIO_WATCHDOG_RETRY_S": "3",
}

# The same for whole training runs (tests/pipeline, tests/campaign): longer boots, a slower watchdog, fast training.
PIPELINE_FAST_ENV = {
    "PISTACHIO_POD_POLL_S": "0.2",
    "PISTACHIO_POD_READY_TIMEOUT_S": "90",
    "PISTACHIO_POD_TERMINATE_TIMEOUT_S": "90",
    "PISTACHIO_POD_LOOKUP_S": "2",
    "PISTACHIO_WATCHDOG_POLL_S": "1",
    "PISTACHIO_WATCHDOG_HEARTBEAT_S": "1",
    "PISTACHIO_WATCHDOG_RETRY_S": "3",
    "PISTACHIO_TRAIN_POLL_S": "0.2",
    "PISTACHIO_TRAIN_SYNC_S": "0.5",
    "PISTACHIO_RECONNECT_S": "90",
}


def default_sigint() -> None:
    """`preexec_fn` for a CLI spawned on a pseudo-terminal: Ctrl-C is SIGINT at its default, as in a person's shell,
    even when the test runner was started with SIGINT ignored (nohup, `trap '' INT`): a child inherits SIG_IGN
    through exec, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def live_pods(admin) -> list[dict]:  # type: ignore[no-untyped-def]
    """Pods the sandbox still bills for (anything not TERMINATED)."""
    return [p for p in admin.pods() if p.get("status") != "TERMINATED"]


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    proc: subprocess.Popen | None = None,
    *,
    interval: float = 0.2,
) -> Any:
    """Poll `predicate` until it is truthy and return its value; fail on timeout, or when `proc` ends first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the CLI ended (exit {proc.returncode}) before {what}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def container_with_flash_attn(image: Any, dest: Path) -> Path:
    """A pod's own Python over `image` with the sandbox's stand-in flash-attn installed (what a pod bootstrap does),
    for tests that run the stand-in trainer without a pod. Returns its bin folder (put it first on PATH)."""
    from pistachio_infra.sandbox import pypi

    bin_dir = image.container(dest / "container")
    wheel, _ = pypi.build_wheel(pypi.STANDIN_WHEELS["flash-attn"], dest / "wheels")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                   check=True, capture_output=True)
    return bin_dir


RENTING = (("train",), ("up",), ("campaign", "run"), ("rebuild",))


def confirmed(args: tuple[str, ...] | list[str]) -> list[str]:
    """`args` with `--yes` added when the command rents (train, up, campaign run, rebuild, a `lock` that reads its
    packages from a pod it rents): the tests run without a terminal, where those commands refuse to rent unless told
    yes (tests/pipeline/test_confirm_e2e.py covers the question itself)."""
    words = [a for a in args if a != "--sandbox"]
    rents = any(tuple(words[:len(r)]) == r for r in RENTING)
    rents |= words[:1] == ["lock"] and not {"--check", "--from-pod", "--upgrade"} & set(words)
    return [*args, "--yes"] if rents and not {"--help", "-h", "--yes", "-y"} & set(args) else list(args)
