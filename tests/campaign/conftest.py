"""Campaign helpers: a campaign file over generated datasets, the real CLI as a subprocess against the sandbox."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, PIPELINE_FAST_ENV, live_pods, wait_until

__all__ = ["cli", "live_pods", "max_overlap", "pods_by_job", "start_cli", "wait_until", "write_campaign"]

FAST_ENV = {**PIPELINE_FAST_ENV, "PISTACHIO_CAMPAIGN_POLL_S": "0.3", "PISTACHIO_CAMPAIGN_STOP_GRACE_S": "30"}


@pytest.fixture(autouse=True)
def fast_campaign(monkeypatch):
    for name, value in FAST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PISTACHIO_PAUSE_AT", raising=False)


def write_campaign(root: Path, *, jobs: int = 4, budget: float = 5.0, images: int = 6, epochs: int = 4,
                   **settings: Any) -> Path:
    """campaign.toml with `jobs` jobs over generated datasets (one seed each); returns its path."""
    import tomlkit

    from pistachio_infra.dataset.demo import generate_dataset

    doc: dict[str, Any] = {
        "campaign": {"name": "test-camp", "budget_usd": budget, "gpu": ["a40", "a6000", "l40s"],
                     "max_concurrent": 2, "retries": 1, **settings},
        "project": {"name": "camp", "comfyui_loras_dir": "loras"},
        "jobs": {},
    }
    for i in range(jobs):
        name = f"char{i}"
        generate_dataset(root / "data" / name, images, seed=100 + i)
        doc["jobs"][name] = {"character": f"Char {i}", "trigger": f"chr{i}x", "dataset": f"data/{name}",
                             "epochs": epochs, "checkpoints": 2}
    path = root / "campaign.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


def cli(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "--sandbox", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "160", **(env or {})})


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([CLI, "--sandbox", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "160"}, start_new_session=True)


def max_overlap(admin) -> int:  # type: ignore[no-untyped-def]
    """Most pods billing at the same time."""
    events = []
    for p in admin.pods():
        events.append((p["created_at"], 1))
        events.append((p["terminated_at"] or float("inf"), -1))
    best = cur = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        cur += delta
        best = max(best, cur)
    return best


def pods_by_job(admin) -> dict[str, list[dict]]:  # type: ignore[no-untyped-def]
    """The sandbox's pods per campaign job (pod names are pistachio-job-<job>-<random>), each job's in creation order.

    Asserts that no two pods of one job ever billed at the same time: a replaced pod (one that was slow to answer
    SSH, or died) is terminated before its successor is created, so a job never pays for two pods at once.
    """
    jobs: dict[str, list[dict]] = {}
    for pod in sorted(admin.pods(), key=lambda p: p["created_at"]):
        match = re.fullmatch(r"pistachio-job-(.+)-[0-9a-f]{6}", pod["name"])
        assert match, f"not a job pod: {pod['name']}"
        jobs.setdefault(match.group(1), []).append(pod)
    for job, pods in jobs.items():
        for a, b in itertools.pairwise(pods):
            assert a["terminated_at"] is not None and a["terminated_at"] <= b["created_at"], \
                f"two pods of {job} billed at once: {a['name']} and {b['name']}"
    return jobs
