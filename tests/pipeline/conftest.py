"""End-to-end helpers: a small project (generated images + pistachio.toml), the real CLI as a subprocess against the
sandbox, and readers of the run's state (the SQLite store under PISTACHIO_HOME)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, PIPELINE_FAST_ENV, confirmed

FAKE_SECRETS = {"WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567", "HF_TOKEN": "hf_" + "x" * 34}


@pytest.fixture(autouse=True)
def fast_pipeline(monkeypatch):
    for name, value in PIPELINE_FAST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PISTACHIO_PAUSE_AT", raising=False)


def write_project(root: Path, *, images: int = 8, loras: str | None = "ComfyUI/models/loras", **job: Any) -> Path:
    """A project folder with `images` generated images and one job `pip`; returns the pistachio.toml path."""
    import tomlkit

    from pistachio_infra.dataset.demo import generate_dataset

    generate_dataset(root / "images", images)
    settings = {"character": "Pip", "trigger": "pip7", "dataset": "images", "gpu": ["a6000", "a40"], "epochs": 8,
                "checkpoints": 4, **job}
    doc = {"project": {"name": "test", **({"comfyui_loras_dir": loras} if loras else {})}, "jobs": {"pip": settings}}
    path = root / "pistachio.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *confirmed(args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def start_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([CLI, *confirmed(args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def kill(proc: subprocess.Popen) -> str:
    """SIGKILL the CLI (nothing of it runs afterwards: no teardown) and return its output."""
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    return out


class RunState:
    """The state store of the test's PISTACHIO_HOME, read fresh on every call."""

    def _store(self):  # type: ignore[no-untyped-def]
        from pistachio_infra.state import Store

        return Store()

    def job_id(self) -> int | None:
        store = self._store()
        try:
            jobs = store.jobs()
            return jobs[-1]["id"] if jobs else None
        finally:
            store.close()

    def stage(self, stage: str) -> str | None:
        job_id = self.job_id()
        if job_id is None:
            return None
        store = self._store()
        try:
            rec = next((r for r in store.stages(job_id) if r.stage == stage), None)
            return rec.status if rec else None
        finally:
            store.close()

    def events(self, kind: str | None = None) -> list[dict]:
        job_id = self.job_id()
        if job_id is None:
            return []
        store = self._store()
        try:
            return [e for e in store.events(job_id) if kind is None or e["kind"] == kind]
        finally:
            store.close()

    def result(self, stage: str) -> dict:
        job_id = self.job_id()
        store = self._store()
        try:
            rec = next((r for r in store.stages(job_id) if r.stage == stage), None)
            return dict(rec.result or {}) if rec else {}
        finally:
            store.close()


@pytest.fixture
def state() -> RunState:
    return RunState()


def one_pod_at_a_time(admin) -> None:  # type: ignore[no-untyped-def]
    spans = sorted((p["created_at"], p["terminated_at"] or float("inf")) for p in admin.pods())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"two pods billed at once: {spans}"


def files_containing(roots: list[Path], secrets: list[str]) -> list[str]:
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                hits += [f"{path}: {s[:6]}…" for s in secrets if s.encode() in data]
    return hits
