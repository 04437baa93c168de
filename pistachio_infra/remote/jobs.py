"""Detached jobs: commands that keep running on the pod when the SSH connection drops.

Each job lives in `{workspace}/.pistachio/jobs/<name>/`:
  pid        the wrapper's pid (session and process-group leader, started with setsid nohup)
  start      the wrapper's start time (field 22 of /proc/<pid>/stat), so a recycled pid is never taken for the job
  exit_code  written (atomically) when the command ends; absent while it runs
  log        stdout and stderr of the command
  lock       flock that makes concurrent starts of the same name start it once
  launch     the id of the start call that launched it: a start retried after an SSH drop (its first try may have
             launched the job, which may even have ended meanwhile) reports that job instead of launching it again
The environment given to `start_detached` is exported by the launching shell (sent over the SSH channel's stdin), so
it reaches the job's process environment and nothing else: not the command line, not a file.
"""

from __future__ import annotations

import codecs
import re
import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..credentials import redact
from .channel import CONNECTION_ERRORS
from .errors import RemoteCommandError, RemoteJobError

if TYPE_CHECKING:
    from .connection import Remote

JOBS_DIR = ".pistachio/jobs"
#: At most this many log bytes per poll, so a huge backlog streams in pieces.
READ_CHUNK = 4 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# Sets pid, alive, ec and size for the job in "$d". alive=1 only if /proc/<pid> is that very process (same start
# time) and not a zombie. The pid is probed before the exit code, so "not alive and no exit code" really means lost.
_PROBE = r"""
_pst_probe() {
  pid=$(cat "$d/pid" 2>/dev/null); st=$(cat "$d/start" 2>/dev/null); alive=0
  if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
    set -- $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null)
    if [ "$#" -ge 20 ] && [ "$1" != Z ] && [ "${20}" = "$st" ]; then alive=1; fi
  fi
  ec=$(cat "$d/exit_code" 2>/dev/null)
  size=$(stat -c %s "$d/log" 2>/dev/null || echo 0)
}
_pst_print() { printf 'job %s %s %s %s\n' "${pid:--}" "$alive" "${ec:--}" "$size"; }
"""

# Runs under `sh -c` as the job's session leader. Traps TERM/INT so that a signal to the process group kills the
# command but lets the wrapper record its exit code (143, 130, ...).
_WRAPPER = r"""trap : TERM INT
d=$1; cmd=$2
set -- $(sed 's/.*) //' /proc/$$/stat)
printf '%s\n' "${20}" > "$d/start"
printf '%s\n' "$$" > "$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"
"${SHELL:-/bin/sh}" -c "$cmd"
ec=$?
printf '%s\n' "$ec" > "$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"
"""


@dataclass(frozen=True)
class DetachedJob:
    name: str
    pid: int | None
    running: bool
    exit_code: int | None
    log_path: str
    log_size: int = 0

    @property
    def lost(self) -> bool:
        """Ended without recording an exit code (killed with SIGKILL, or the pod restarted)."""
        return not self.running and self.exit_code is None


def job_dir(remote: Remote, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid job name {name!r}: use letters, digits, '.', '_' and '-'")
    return f"{remote.jobs_dir}/{name}"


def _parse_status(remote: Remote, name: str, line: str) -> DetachedJob | None:
    parts = line.split()
    if not parts or parts[0] == "none":
        return None
    if parts[0] != "job" or len(parts) != 5:
        raise RemoteJobError(f"unexpected job status from pod {remote.pod_id}: {line!r}")
    _, pid, alive, ec, size = parts
    exit_code = None if ec == "-" else int(ec)
    return DetachedJob(
        name=name,
        pid=None if pid == "-" else int(pid),
        running=alive == "1" and exit_code is None,
        exit_code=exit_code,
        log_path=f"{job_dir(remote, name)}/log",
        log_size=int(size),
    )


def start_detached(
    remote: Remote,
    name: str,
    command: str,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    launch_id: str | None = None,
) -> DetachedJob:
    d = job_dir(remote, name)
    launch_id = launch_id or uuid.uuid4().hex
    launch = (
        f'setsid nohup sh -c {shlex.quote(_WRAPPER)} pistachio-job "$d" {shlex.quote(command)}'
        ' </dev/null >"$d/log" 2>&1 9>&- &'
    )
    script = "\n".join(
        [
            f"d={shlex.quote(d)}",
            'mkdir -p "$d" || exit 1',
            'exec 9>"$d/lock"',
            "if command -v flock >/dev/null 2>&1; then flock -w 30 9; fi",
            _PROBE,
            "_pst_probe",
            'if [ "$alive" = 1 ] && [ -z "$ec" ]; then _pst_print; exit 0; fi',
            f'if [ "$(cat "$d/launch" 2>/dev/null)" = {launch_id} ]; then _pst_print; exit 0; fi',
            'rm -f "$d/pid" "$d/pid.tmp" "$d/start" "$d/exit_code" "$d/exit_code.tmp"',
            f'printf "%s\\n" {launch_id} > "$d/launch"',
            f"cd -- {shlex.quote(cwd)} || exit 1" if cwd else "",
            launch,
            'i=0; while [ ! -s "$d/pid" ] && [ "$i" -lt 500 ]; do sleep 0.01; i=$((i+1)); done',
            "_pst_probe; _pst_print",
        ]
    )
    secrets = [v for v in (env or {}).values() if v]
    raw = remote.exec(script, env=env, timeout=60)
    if raw.exit_code != 0:
        raise RemoteCommandError(
            pod_id=remote.pod_id,
            command=redact(f"start job {name}: {command}", secrets),
            exit_code=raw.exit_code,
            stderr_tail=redact(raw.stderr.decode("utf-8", "replace")[-1500:], secrets),
        )
    status = _parse_status(remote, name, raw.stdout.decode().strip().splitlines()[-1])
    if status is None or status.pid is None:
        raise RemoteJobError(
            f"job {name} did not start on pod {remote.pod_id}",
            f"check that setsid, nohup and sh exist on the pod; its log is {d}/log",
        )
    return status


def job(remote: Remote, name: str) -> DetachedJob | None:
    d = job_dir(remote, name)
    script = f'd={shlex.quote(d)}\n[ -d "$d" ] || {{ echo none; exit 0; }}\n{_PROBE}\n_pst_probe; _pst_print'
    raw = remote.exec(script, timeout=60)
    return _parse_status(remote, name, raw.stdout.decode().strip())


def kill_job(remote: Remote, name: str, signal: str = "TERM") -> None:
    """Send `signal` to the job's whole process group; the wrapper survives TERM/INT to record the exit code."""
    if not signal.isalnum():
        raise ValueError(f"invalid signal name {signal!r}")
    d = job_dir(remote, name)
    script = (
        f"d={shlex.quote(d)}\n{_PROBE}\n_pst_probe\n"
        f'if [ "$alive" = 1 ]; then kill -s {signal} -- "-$pid" 2>/dev/null || kill -s {signal} "$pid"; fi'
    )
    remote.exec(script, timeout=60)


def read_log(remote: Remote, name: str, offset: int = 0) -> tuple[bytes, int]:
    d = job_dir(remote, name)
    raw = remote.exec(f"tail -c +{offset + 1} {shlex.quote(d)}/log 2>/dev/null | head -c {READ_CHUNK}", timeout=120)
    return raw.stdout, offset + len(raw.stdout)


def _poll(remote: Remote, name: str, offset: int) -> tuple[DetachedJob | None, bytes]:
    """Status first, then log bytes from `offset`, in one round trip: a finished status implies a complete log."""
    d = job_dir(remote, name)
    script = (
        f'd={shlex.quote(d)}\n[ -d "$d" ] || {{ echo none; exit 0; }}\n{_PROBE}\n_pst_probe; _pst_print\n'
        f'tail -c +{offset + 1} "$d/log" 2>/dev/null | head -c {READ_CHUNK}'
    )
    raw = remote.exec(script, timeout=120)
    line, _, data = raw.stdout.partition(b"\n")
    return _parse_status(remote, name, line.decode()), data


def follow(
    remote: Remote,
    name: str,
    *,
    offset: int = 0,
    on_output: Callable[[str], None],
    poll: float = 0.5,
    reconnect_timeout: float = 60.0,
) -> int:
    """Stream the job's log from `offset` until it ends and return its exit code.

    After an SSH drop it reconnects (same host-key pin) and continues from the last byte delivered, so no output is
    duplicated or lost; gives up with SshNotReadyError if the pod stays unreachable for `reconnect_timeout`.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        try:
            status, data = _poll(remote, name, offset)
        except CONNECTION_ERRORS:
            remote.reconnect(reconnect_timeout)
            continue
        if status is None:
            raise RemoteJobError(f"no job named {name} on pod {remote.pod_id}", "start it with start_detached first")
        if data:
            offset += len(data)
            text = decoder.decode(data)
            if text:
                on_output(text)
            if len(data) >= READ_CHUNK:
                continue
        if not status.running:
            rest = decoder.decode(b"", final=True)
            if rest:
                on_output(rest)
            if status.exit_code is None:
                raise RemoteJobError(
                    f"job {name} on pod {remote.pod_id} stopped without recording an exit code"
                    " (killed with SIGKILL, or the pod restarted)",
                    f"read its log at {status.log_path}; rerun the stage to start it again",
                )
            return status.exit_code
        time.sleep(poll)
