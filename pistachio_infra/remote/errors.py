"""Errors raised by the remote runner. All are `PistachioError`s: one line saying what happened and what to do."""

from __future__ import annotations

from ..errors import CloudError, PistachioError


class SshNotReadyError(CloudError):
    """The pod's sshd did not accept a session before the deadline."""


class HostKeyMismatchError(PistachioError):
    """The pod offered a host key other than the one pinned on first connect. Never retried, never accepted."""


class SshConnectionLostError(CloudError):
    """The SSH connection dropped while a command or transfer was in flight."""


class RemoteCommandError(PistachioError):
    """A command on the pod failed (non-zero exit) or timed out."""

    def __init__(
        self,
        *,
        pod_id: str,
        command: str,
        exit_code: int | None,
        stderr_tail: str,
        stdout: str = "",
        timeout: float | None = None,
    ) -> None:
        self.pod_id = pod_id
        self.command = command
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.stdout = stdout
        shown = command if len(command) <= 200 else command[:197] + "..."
        shown = " ".join(shown.split())
        how = f"timed out after {timeout:g}s" if exit_code is None else f"exited with {exit_code}"
        tail = " | ".join(line for line in stderr_tail.splitlines() if line.strip())
        cause = f"`{shown}` {how} on pod {pod_id}" + (f": {tail}" if tail else " (no stderr)")
        super().__init__(cause, "read the stderr above; `pistachio-infra ssh POD` opens a shell on the pod")


class RemoteJobError(PistachioError):
    """A detached job is unknown, or ended without recording its exit code."""


class TransferError(PistachioError):
    """A file transfer failed or a received file does not match its sha256."""
