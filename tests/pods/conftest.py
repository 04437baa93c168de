"""Pod lifecycle tests run against the sandbox with timings in seconds instead of minutes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

FAST_ENV = {
    "PISTACHIO_POD_POLL_S": "0.2",
    "PISTACHIO_POD_READY_TIMEOUT_S": "8",
    "PISTACHIO_POD_TERMINATE_TIMEOUT_S": "20",
    "PISTACHIO_POD_LOOKUP_S": "2",
    "PISTACHIO_WATCHDOG_POLL_S": "0.5",
    "PISTACHIO_WATCHDOG_HEARTBEAT_S": "0.5",
    "PISTACHIO_WATCHDOG_RETRY_S": "3",
}


@pytest.fixture(autouse=True)
def fast_pods(monkeypatch):
    for name, value in FAST_ENV.items():
        monkeypatch.setenv(name, value)


def live_pods(admin) -> list[dict]:
    """Pods the sandbox still bills for (anything not TERMINATED)."""
    return [p for p in admin.pods() if p.get("status") != "TERMINATED"]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pod_workspace(admin, pod_id: str) -> Path:
    """A sandbox pod's workspace as seen from this machine (its network volume, or its own directory)."""
    return Path(next(p for p in admin.pods() if p["id"] == pod_id)["workspace"])
