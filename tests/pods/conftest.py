"""Pod lifecycle tests run against the sandbox with timings in seconds instead of minutes."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import POD_FAST_ENV, live_pods, wait_until

__all__ = ["live_pods", "pod_workspace", "wait_until"]


@pytest.fixture(autouse=True)
def fast_pods(monkeypatch):
    for name, value in POD_FAST_ENV.items():
        monkeypatch.setenv(name, value)


def pod_workspace(admin, pod_id: str) -> Path:
    """A sandbox pod's workspace as seen from this machine (its network volume, or its own directory)."""
    return Path(next(p for p in admin.pods() if p["id"] == pod_id)["workspace"])
