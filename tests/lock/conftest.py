"""Lock tests: the real CLI and public functions against the sandbox, with pod timings in seconds."""

from __future__ import annotations

import os
import subprocess
from contextlib import closing

import pytest
from helpers import CLI, POD_FAST_ENV, confirmed, live_pods

__all__ = ["cli", "connect_pod", "live_pods"]


@pytest.fixture(autouse=True)
def fast_pods(monkeypatch):
    for name, value in POD_FAST_ENV.items():
        monkeypatch.setenv(name, value)


def cli(*args: str, input: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}  # rich tables: no wrapping
    return subprocess.run([CLI, *confirmed(args)], capture_output=True, text=True, input=input, timeout=timeout,
                          env=env)


def connect_pod(name: str):
    """A Remote to a live pod of ours, by record name (what `lock --check` does too)."""
    from pistachio_infra.paths import ssh_key_path
    from pistachio_infra.remote import Remote
    from pistachio_infra.state import Store

    with closing(Store()) as store:
        rec = store.pod(name)
        assert rec is not None and rec.ssh_host, rec
        return Remote.connect(pod_id=rec.pod_id, host=rec.ssh_host, port=rec.ssh_port, key_path=ssh_key_path(),
                              store=Store(), timeout=30)
