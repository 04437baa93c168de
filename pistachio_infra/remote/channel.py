"""One SSH exec channel per call, on the transport that the fabric Connection owns.

Scripts travel on the channel's stdin and the pod's login shell runs `eval "$(cat)"`: the script and the environment
values it exports (API keys) never appear in a command line on the pod (`ps`, /proc/*/cmdline) nor in any file there;
they exist only in the shell's memory and the environment of the processes it starts. Output is collected as bytes.
"""

from __future__ import annotations

import contextlib
import re
import select
import shlex
import time
from dataclasses import dataclass

import paramiko

from .errors import SshConnectionLostError

EVAL_STDIN = 'eval "$(cat)"'
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Exceptions that mean "the connection is gone" (as opposed to "the command failed").
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.SSHException,
    EOFError,
    OSError,
    SshConnectionLostError,
)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class ExecTimeout(SshConnectionLostError):
    """No end of the command within its timeout. `Remote.run` reports it as a command timeout; for the short
    internal scripts (job status, hashes, transfers) it means the connection hangs, so it counts as a lost one."""


def env_exports(env: dict[str, str] | None) -> str:
    lines = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(value))}\n")
    return "".join(lines)


def close_quietly(chan: paramiko.Channel) -> None:
    """Closing a channel on a dead transport raises; the channel is gone either way."""
    with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
        chan.close()


def reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def open_channel(transport: paramiko.Transport | None, pod_id: str, *, timeout: float = 60.0) -> paramiko.Channel:
    if transport is None or not transport.is_active():
        raise SshConnectionLostError(f"the SSH connection to pod {pod_id} is closed", "reconnect and retry")
    try:
        chan = transport.open_session(timeout=timeout)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise SshConnectionLostError(f"cannot open an SSH session on pod {pod_id}: {reason(exc)}", "reconnect") from exc
    chan.settimeout(timeout)
    return chan


def collect(chan: paramiko.Channel, pod_id: str, timeout: float | None) -> ExecResult:
    """Read stdout and stderr until the command ends; raise if the connection drops or `timeout` passes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    try:
        while True:
            while chan.recv_ready():
                out += chan.recv(1 << 16)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(1 << 16)
            if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            wait = 0.5
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise ExecTimeout(f"pod {pod_id} did not answer within {timeout:g}s", "reconnect and retry")
            select.select([chan], [], [], wait)
        # the exit status follows EOF closely; the channel closing without one means the connection dropped
        remaining = 30.0 if deadline is None else max(0.1, deadline - time.monotonic())
        chan.status_event.wait(remaining)
    except (TimeoutError, paramiko.SSHException, EOFError, OSError) as exc:
        raise SshConnectionLostError(f"the SSH connection to pod {pod_id} dropped: {reason(exc)}", "reconnect") from exc
    transport = chan.get_transport()
    if chan.exit_status < 0 and (transport is None or not transport.is_active()):
        raise SshConnectionLostError(
            f"the SSH connection to pod {pod_id} dropped before the command reported its exit status",
            "reconnect and check whether the command ran",
        )
    # -1 on a live connection: the remote shell was killed by a signal (paramiko ignores "exit-signal")
    return ExecResult(chan.exit_status, bytes(out), bytes(err))


def exec_script(
    transport: paramiko.Transport | None,
    pod_id: str,
    script: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> ExecResult:
    """Run `script` in the pod's login shell with `env` exported; stdin is the script itself, then EOF."""
    chan = open_channel(transport, pod_id)
    try:
        try:
            chan.exec_command(EVAL_STDIN)
            chan.sendall((env_exports(env) + script + "\n").encode())
            chan.shutdown_write()
        except (TimeoutError, paramiko.SSHException, EOFError, OSError) as exc:
            raise SshConnectionLostError(
                f"the SSH connection to pod {pod_id} dropped: {reason(exc)}", "reconnect and retry"
            ) from exc
        return collect(chan, pod_id, timeout)
    finally:
        close_quietly(chan)
