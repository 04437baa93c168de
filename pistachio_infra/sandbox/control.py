"""Start, find, stop and reset the sandbox server, and drive it from tests (Admin).

The server runs detached (its own session) so it outlives the command that started it; `home/info.json` says
where it listens. `start` is idempotent: a healthy server for that home is reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import RepoPin, WheelPin
from ..errors import PistachioError
from ..paths import sandbox_dir

START_TIMEOUT_S = 30.0
_children: dict[Path, subprocess.Popen] = {}  # servers this process started (reaped on stop)


@dataclass(frozen=True)
class SandboxInfo:
    home: Path
    rest_url: str
    graphql_base: str
    api_key: str = field(repr=False)
    hf_endpoint: str
    pid: int
    repos: dict[str, RepoPin] = field(default_factory=dict)
    wheels: dict[str, WheelPin] = field(default_factory=dict)  # served by the sandbox's package index
    index_url: str | None = None  # the package index (PEP 503 root) pods install Python packages from

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxInfo:
        return cls(
            home=Path(data["home"]),
            rest_url=data["rest_url"],
            graphql_base=data["graphql_base"],
            api_key=data["api_key"],
            hf_endpoint=data["hf_endpoint"],
            pid=int(data["pid"]),
            repos={name: RepoPin(**pin) for name, pin in (data.get("repos") or {}).items()},
            wheels={name: WheelPin(**pin) for name, pin in (data.get("wheels") or {}).items()},
            index_url=data.get("index_url"),
        )


def _home(home: Path | str | None) -> Path:
    return Path(home).resolve() if home is not None else sandbox_dir().resolve()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _read_info(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads((home / "info.json").read_text())
    except (OSError, ValueError):
        return None


def _healthy(data: dict[str, Any]) -> bool:
    import httpx

    try:
        resp = httpx.get(data["graphql_base"] + "/_sandbox/health", timeout=2.0)
        return resp.status_code == 200 and resp.json().get("pid") == data["pid"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def status(home: Path | str | None = None) -> SandboxInfo | None:
    """The running sandbox for `home` (default: the state dir's sandbox), or None."""
    home = _home(home)
    data = _read_info(home)
    if data is None or not _alive(int(data.get("pid", 0))) or not _healthy(data):
        return None
    return SandboxInfo.from_json(data)


def _log_tail(home: Path, lines: int = 15) -> str:
    try:
        text = (home / "server.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start(home: Path | str | None = None, scenario: str | Path | None = None, *,
          log_requests: bool = False) -> SandboxInfo:
    """Start the sandbox server for `home` (detached) and wait until it answers; reuse it if already running.

    With `scenario` and a running server, the server switches to that scenario (faults re-armed)."""
    from filelock import FileLock

    home = _home(home)
    home.mkdir(parents=True, exist_ok=True)
    scenario_path = Path(scenario).resolve() if scenario is not None else None
    if scenario_path is not None:
        from .scenario import load_scenario

        load_scenario(scenario_path)  # refuse a bad file here, with its one-line error
    with FileLock(str(home / ".control.lock"), timeout=120):
        info = status(home)
        if info is not None:
            if scenario_path is not None:
                Admin(info).set_scenario(scenario_path)
            return info
        stale = _read_info(home)
        if stale and _alive(int(stale.get("pid", 0))):
            _terminate_process(int(stale["pid"]))
        # a stale info.json stays: the new server reads its ports to listen on the same ones again
        cmd = [sys.executable, "-m", "pistachio_infra.sandbox.server", "--home", str(home)]
        if scenario_path is not None:
            cmd += ["--scenario", str(scenario_path)]
        from .requestlog import ENV as LOG_REQUESTS

        env = {**os.environ, LOG_REQUESTS: "1"} if log_requests else None
        with open(home / "server.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, cwd=str(home), env=env)
        _children[home] = proc
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _children.pop(home, None)
                raise PistachioError(
                    f"the sandbox server exited at start (code {proc.returncode}): {_log_tail(home, 5)}",
                    f"see {home / 'server.log'}",
                )
            data = _read_info(home)
            if data is not None and data.get("pid") == proc.pid:
                return SandboxInfo.from_json(data)
            time.sleep(0.01)
        _terminate_process(proc.pid)
        raise PistachioError(f"the sandbox server did not answer within {START_TIMEOUT_S:.0f}s",
                             f"see {home / 'server.log'}")


def ensure_running() -> SandboxInfo:
    """The sandbox under the state dir, started if it is not running."""
    return start(sandbox_dir())


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


def _terminate_process(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        if _wait_gone(pid, wait):
            return


def _reap_orphans(home: Path) -> None:
    """After the server is gone: kill pod processes a dead server left behind, and record its live pods as
    terminated (billing closed), so a later start does not boot them again."""
    if (home / "pods").is_dir():
        from .image import PodImage
        from .podhost import PodHost

        PodHost(home, PodImage(home / "no-image")).stop_all()
    if (home / "state.sqlite3").exists():
        from .store import SandboxStore

        store = SandboxStore(home / "state.sqlite3")
        try:
            now = time.time()
            for pod in store.pods():
                store.close_interval(pod.id, now)
                pod.status, pod.terminated_at, pod.ssh_port = "TERMINATED", now, None
                store.save_pod(pod)
        finally:
            store.close()


def stop(home: Path | str | None = None) -> None:
    """Terminate every pod (sshd and all its processes) and stop the server. Nothing running is fine."""
    home = _home(home)
    data = _read_info(home)
    if data is not None and _alive(int(data.get("pid", 0))):
        import httpx

        pid = int(data["pid"])
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(data["graphql_base"] + "/_sandbox/shutdown", json={"terminate_pods": True},
                       headers={"Authorization": f"Bearer {data['api_key']}"}, timeout=60)
        if not _wait_gone(pid, 10):
            _terminate_process(pid)
    proc = _children.pop(home, None)
    if proc is not None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _terminate_process(proc.pid)
            proc.wait(timeout=5)
    _reap_orphans(home)
    (home / "info.json").unlink(missing_ok=True)


def reset(home: Path | str | None = None) -> None:
    """Stop the sandbox and delete its state (pods, volumes, keys, HF repos). The pod image cache is kept."""
    home = _home(home)
    stop(home)
    shutil.rmtree(home, ignore_errors=True)


class Admin:
    """Test and fault control over the server's /_sandbox/ routes."""

    def __init__(self, info: SandboxInfo) -> None:
        self.info = info
        self.base = info.graphql_base + "/_sandbox"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        import httpx

        resp = httpx.request(method, self.base + path, json=body, params=params or None, timeout=60,
                             headers={"Authorization": f"Bearer {self.info.api_key}"})
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise PistachioError(f"sandbox admin {method} {path}: {resp.status_code} {detail}")
        return resp.json() if resp.content else None

    def inject(self, kind: str, **params: Any) -> dict[str, Any]:
        """Arm a fault (see faults.py for kinds and parameters), e.g. inject("rate_limit", count=3)."""
        return self._call("POST", "/faults", {"kind": kind, **params})

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self, kind: str | None = None) -> None:
        self._call("DELETE", "/faults", **({"kind": kind} if kind else {}))

    def preempt(self, pod_id: str) -> None:
        self._call("POST", f"/pods/{pod_id}/preempt")

    def drop_ssh(self, pod_id: str) -> None:
        self._call("POST", f"/pods/{pod_id}/drop-ssh")

    def billing(self) -> dict[str, float]:
        """pod_id -> USD billed so far (terminated pods included)."""
        return self._call("GET", "/billing")["billed"]

    def balance(self) -> float:
        return self._call("GET", "/billing")["balance"]

    def pod_processes(self, pod_id: str) -> list[int]:
        return self._call("GET", f"/pods/{pod_id}/processes")["pids"]

    def pods(self) -> list[dict[str, Any]]:
        """The raw pod table, terminated pods included (each with its pod-scoped api_key and workspace)."""
        return self._call("GET", "/pods")["pods"]

    def set_scenario(self, path: str | Path | None) -> None:
        """Switch to the scenario in `path` (None: the default scenario); armed faults are replaced."""
        self._call("PUT", "/scenario", {"path": str(path) if path is not None else None})

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def wait_host_ready(self, timeout: float = 60.0) -> None:
        """Block until the pod host (pod image + sshd launcher) is set up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if health.get("host_ready"):
                return
            if health.get("host_error"):
                raise PistachioError(f"the sandbox pod host failed: {health['host_error']}")
            time.sleep(0.05)
        raise PistachioError(f"the sandbox pod host was not ready within {timeout:.0f}s")
