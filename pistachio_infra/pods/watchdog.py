"""The pod-side watchdog (templates/watchdog.py.j2) and the client's side of it: install, heartbeat, markers.

The watchdog terminates its own pod through the RunPod API with the pod-scoped key when (a) the maximum runtime
is reached, (b) the client's heartbeat is older than `idle_s` while no job runs and nobody is logged in on a
terminal, or (c) the job finished and nothing was harvested within `harvest_grace_s`. It covers what the client
cannot: SIGKILL, a closed laptop, a lost network.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from ..errors import ConfigError
from .scripts import write_text_command


class RemoteLike(Protocol):  # the part of remote.Remote used here
    workspace: Any

    def run(self, cmd: str, *, env: dict[str, str] | None = ..., timeout: float | None = ..., check: bool = ...): ...


@dataclass(frozen=True)
class WatchdogPolicy:
    max_runtime_s: float  # from the pod's creation
    idle_s: float | None = 900.0  # no heartbeat for this long, no job, nobody logged in → terminate; None: off
    harvest_grace_s: float = 1800.0  # job finished and not harvested within this → terminate
    poll_s: float = 15.0
    heartbeat_s: float = 30.0  # how often the attached client touches the heartbeat file
    retry_s: float = 60.0  # re-ask RunPod to terminate when the pod is still there after this long

    def __post_init__(self) -> None:
        if self.max_runtime_s <= 0:
            raise ConfigError(f"max runtime {self.max_runtime_s:g}s is not positive", "give --max-hours > 0")
        if self.idle_s is not None and self.idle_s <= self.heartbeat_s:
            raise ConfigError(
                f"idle timeout {self.idle_s:g}s is not longer than the heartbeat interval {self.heartbeat_s:g}s",
                "raise the idle timeout (--idle-minutes)",
            )

    @classmethod
    def from_env(cls, max_runtime_s: float, idle_s: float | None = 900.0) -> WatchdogPolicy:
        """Defaults, with PISTACHIO_WATCHDOG_{IDLE,GRACE,POLL,HEARTBEAT,RETRY}_S overriding (tests use seconds)."""

        from ..settings import get_settings

        knobs = get_settings().watchdog
        d = cls(max_runtime_s=max_runtime_s)
        return cls(
            max_runtime_s=max_runtime_s,
            idle_s=idle_s if knobs.idle_s is None else knobs.idle_s,
            harvest_grace_s=knobs.grace_s or d.harvest_grace_s,
            poll_s=knobs.poll_s or d.poll_s,
            heartbeat_s=knobs.heartbeat_s or d.heartbeat_s,
            retry_s=knobs.retry_s or d.retry_s,
        )


@dataclass(frozen=True)
class PodFiles:
    """The watchdog's files on the pod, all under `{workspace}/.pistachio/`."""

    workspace: PurePosixPath

    @property
    def state_dir(self) -> PurePosixPath:
        return self.workspace / ".pistachio"

    @property
    def heartbeat(self) -> PurePosixPath:
        return self.state_dir / "heartbeat"

    @property
    def finished_marker(self) -> PurePosixPath:
        return self.state_dir / "job-finished"

    @property
    def harvested_marker(self) -> PurePosixPath:
        return self.state_dir / "harvested"

    @property
    def release_marker(self) -> PurePosixPath:
        """Written by the pod's supervisor once the result is safe: the watchdog terminates the pod at once."""
        return self.state_dir / "release"

    @property
    def script(self) -> PurePosixPath:
        return self.state_dir / "watchdog.py"

    @property
    def log(self) -> PurePosixPath:
        return self.state_dir / "watchdog.log"

    @property
    def pid_file(self) -> PurePosixPath:
        return self.state_dir / "watchdog.pid"

    @property
    def status_file(self) -> PurePosixPath:
        return self.state_dir / "watchdog.json"


@dataclass(frozen=True)
class Installed:
    deadline_epoch: float
    log: PurePosixPath


def files_for(remote: RemoteLike) -> PodFiles:
    return PodFiles(PurePosixPath(str(remote.workspace)))


def render_watchdog(
    policy: WatchdogPolicy,
    *,
    pod_id: str,
    rest_url: str,
    files: PodFiles,
    remaining_s: float,
    jobs_dir: PurePosixPath,
    job_pid_file: str = "pid",
    job_exit_file: str = "exit_code",
    guard: bool = False,
) -> str:
    from .scripts import render

    config = {
        "pod_id": pod_id,
        "rest_url": rest_url,
        "max_runtime_s": policy.max_runtime_s,
        "remaining_s": max(0.0, remaining_s),
        "idle_s": policy.idle_s,
        "harvest_grace_s": policy.harvest_grace_s,
        "poll_s": policy.poll_s,
        "retry_s": policy.retry_s,
        "heartbeat": str(files.heartbeat),
        "finished_marker": str(files.finished_marker),
        "harvested_marker": str(files.harvested_marker),
        "release_marker": str(files.release_marker),
        "jobs_dir": str(jobs_dir),
        "ignore_jobs": ["watchdog"],
        "job_pid_file": job_pid_file,
        "job_exit_file": job_exit_file,
        "log": str(files.log),
        "pid_file": str(files.pid_file),
        "status_file": str(files.status_file),
        "guard": guard,  # started by the pod's start command: pod id and workspace from its environment
    }
    return render("watchdog.py.j2", config=config)


def install(
    remote: RemoteLike,
    policy: WatchdogPolicy,
    *,
    pod_id: str,
    rest_url: str,
    deadline_epoch: float,
    jobs_dir: PurePosixPath | None = None,
) -> Installed:
    """Write the watchdog onto the pod and start it detached (setsid), replacing an older one. Idempotent."""
    files = files_for(remote)
    script = render_watchdog(
        policy,
        pod_id=pod_id,
        rest_url=rest_url,
        files=files,
        remaining_s=deadline_epoch - time.time(),
        jobs_dir=jobs_dir or _jobs_dir(remote),
    )
    q = shlex.quote
    state, status = q(str(files.state_dir)), q(str(files.status_file))
    cmd = (
        f"mkdir -p {state} && touch {q(str(files.heartbeat))} && rm -f {status} || exit 1\n"
        + write_text_command(str(files.script), script, mode="0755")
        + f"cd {state} || exit 1\n"
        f"setsid nohup python3 {q(str(files.script))} </dev/null >>{q(str(files.log))} 2>&1 &\n"
        f"for i in $(seq 100); do [ -s {status} ] && exit 0; sleep 0.1; done\n"
        f"echo 'the watchdog did not start:' >&2; tail -n 5 {q(str(files.log))} >&2; exit 1\n"
    )
    remote.run(cmd, timeout=60, check=True)
    return Installed(deadline_epoch=deadline_epoch, log=files.log)


def _jobs_dir(remote: RemoteLike) -> PurePosixPath:
    jobs_dir = getattr(remote, "jobs_dir", None)
    if jobs_dir is not None:
        return PurePosixPath(str(jobs_dir))
    return PurePosixPath(str(remote.workspace)) / ".pistachio" / "jobs"


def touch(remote: RemoteLike, path: PurePosixPath) -> None:
    remote.run(f"mkdir -p {shlex.quote(str(path.parent))} && touch {shlex.quote(str(path))}", timeout=30, check=True)


def mark_job_finished(remote: RemoteLike) -> None:
    """The job's work is done on the pod: from now on (c) applies — harvest within the grace time or be reaped."""
    touch(remote, files_for(remote).finished_marker)


def mark_harvested(remote: RemoteLike) -> None:
    touch(remote, files_for(remote).harvested_marker)


def clear_job_markers(remote: RemoteLike) -> None:
    """A new job starts on this pod: forget the previous job's finished/harvested markers."""
    f = files_for(remote)
    remote.run(f"rm -f {shlex.quote(str(f.finished_marker))} {shlex.quote(str(f.harvested_marker))} "
               f"{shlex.quote(str(f.release_marker))}", timeout=30)


class Heartbeat:
    """Touches the heartbeat file every `interval_s` from a daemon thread while the client is attached.

    `connect` returns a fresh remote (its own SSH connection, so the heartbeat never waits on a long command);
    failures are counted, not raised: a missed heartbeat only brings the idle rule closer."""

    def __init__(self, connect, interval_s: float) -> None:  # type: ignore[no-untyped-def]
        self._connect = connect
        self.interval_s = interval_s
        self.beats = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pistachio-heartbeat", daemon=True)
        self._remote: Any = None

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._remote is None:
                    self._remote = self._connect()
                touch(self._remote, files_for(self._remote).heartbeat)
                self.beats += 1
            except Exception:
                self.failures += 1
                self._close()
            self._stop.wait(self.interval_s)
        self._close()

    def _close(self) -> None:
        remote, self._remote = self._remote, None
        if remote is not None:
            with contextlib.suppress(Exception):
                remote.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
