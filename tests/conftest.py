"""Shared fixtures: a fresh local sandbox (the RunPod stand-in) per test.

- `sandbox`: a running sandbox under tmp_path with the default scenario; PISTACHIO_HOME=tmp_path and
  PISTACHIO_SANDBOX=1 are set, so `endpoints.resolve_cloud()` finds it. Stopped at teardown, which also checks that
  no process of any of its pods is left alive.
- `sandbox_factory(scenario=None, home=None)`: the same with a scenario (a TOML path, or a dict written as TOML).
- `sandbox_admin`: `control.Admin` for `sandbox` (faults, preemption, SSH drops, billing, pod processes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="session")
def sandbox_image_cache(tmp_path_factory) -> Iterator[Path]:
    """One pod-image cache for the whole run (the image is built once, then reused by every sandbox).

    Under pytest-xdist every worker has its own base temp dir (<run>/popen-gwN); the cache goes next to them, in the
    run's dir, so all workers share it: the image and the stand-in repos are built under a file lock, once.
    """
    preset = os.environ.get("PISTACHIO_SANDBOX_IMAGE_CACHE")
    if preset:
        path = Path(preset)
    else:
        base = tmp_path_factory.getbasetemp()
        path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "sandbox-image-cache"
        path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PISTACHIO_SANDBOX_IMAGE_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def pod_image(sandbox_image_cache):  # type: ignore[no-untyped-def]
    """The pod image the sandboxes use (tests that drive the image or a pod host without a sandbox server)."""
    from pistachio_infra.sandbox.image import PodImage

    return PodImage.ensure(sandbox_image_cache)


@pytest.fixture
def sandbox_factory(tmp_path, monkeypatch, sandbox_image_cache) -> Iterator[Callable[..., Any]]:
    from pistachio_infra.paths import sandbox_dir
    from pistachio_infra.sandbox import control

    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    monkeypatch.setenv("PISTACHIO_SANDBOX", "1")
    started: list[Path] = []

    def make(scenario: str | Path | dict | None = None, home: Path | None = None) -> control.SandboxInfo:
        if isinstance(scenario, dict):
            import tomlkit

            path = tmp_path / f"scenario-{len(started)}.toml"
            path.write_text(tomlkit.dumps(scenario))
            scenario = path
        info = control.start(home or sandbox_dir(), scenario)
        if info.home not in started:
            started.append(info.home)
        return info

    yield make

    leftovers: dict[str, list[int]] = {}
    for home in started:
        info = control.status(home)
        pids: dict[str, list[int]] = {}
        if info is not None:
            admin = control.Admin(info)
            pids = {p["id"]: admin.pod_processes(p["id"]) for p in admin.pods() if p["status"] != "TERMINATED"}
        control.stop(home)
        for pod_id, pod_pids in pids.items():
            alive = [pid for pid in pod_pids if _alive(pid)]
            if alive:
                leftovers[pod_id] = alive
    assert not leftovers, f"pod processes outlived the sandbox: {leftovers}"


@pytest.fixture
def sandbox(sandbox_factory):
    return sandbox_factory()


@pytest.fixture
def sandbox_admin(sandbox):
    from pistachio_infra.sandbox.control import Admin

    return Admin(sandbox)
