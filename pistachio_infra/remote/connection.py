"""`Remote`: one pod's SSH connection (a fabric Connection, paramiko underneath) and everything done through it.

Commands, detached jobs and transfers are implemented in `jobs.py` and `transfer.py`; this class owns the
connection, its readiness wait and host-key pinning, and gives them one place to run scripts.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import paramiko
from fabric import Config, Connection
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from ..credentials import redact
from ..state import Store
from . import jobs, transfer
from .channel import ExecResult, ExecTimeout, exec_script, open_channel
from .errors import HostKeyMismatchError, RemoteCommandError, SshConnectionLostError, SshNotReadyError
from .hostkeys import PinnedHostKeyPolicy

T = TypeVar("T")

# paramiko logs handshake failures (expected while a pod boots) at ERROR; without a handler Python's last-resort
# handler would print them with tracebacks. Applications that configure logging still receive them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

#: How long one connection attempt may take (TCP connect, banner, auth) before it is retried.
ATTEMPT_TIMEOUT = 10.0
KEEPALIVE_SECONDS = 15
RECONNECT_TIMEOUT = 60.0
#: A transfer interrupted by a dropped connection is resumed (after a reconnect) up to this many times in all.
TRANSFER_ATTEMPTS = 3
STDERR_TAIL_LINES = 12
STDERR_TAIL_CHARS = 1500


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _retryable(exc: BaseException) -> bool:
    """Connection refused/reset, banner not yet sent, auth not yet set up: the pod is still starting."""
    if isinstance(exc, HostKeyMismatchError | paramiko.BadHostKeyException):
        return False
    return isinstance(exc, OSError | EOFError | paramiko.SSHException)


def _describe(exc: BaseException | None) -> str:
    """The last connection error in words (paramiko's own messages are often misleading, e.g. "No existing session")."""
    text = str(exc)
    if isinstance(exc, paramiko.AuthenticationException):
        return "the pod refused our SSH key (authorized_keys not written yet, or a different key)"
    if isinstance(exc, paramiko.SSHException):
        if "banner" in text.lower() or "no existing session" in text.lower():
            return "the port accepts TCP but no SSH handshake completed (sshd not answering yet)"
        return f"SSH error: {text}"
    if isinstance(exc, ConnectionRefusedError) or "Unable to connect" in text:
        return "connection refused (nothing listening on the port yet)"
    if isinstance(exc, TimeoutError):
        return "timed out connecting"
    return f"{type(exc).__name__}: {text}"


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-STDERR_TAIL_LINES:]
    return "\n".join(lines)[-STDERR_TAIL_CHARS:]


class Remote:
    def __init__(self, *, pod_id: str, host: str, port: int, key_path: Path, store: Store, user: str = "root") -> None:
        self.pod_id = pod_id
        self.host = host
        self.port = port
        self.key_path = Path(key_path)
        self.store = store
        self.user = user
        #: SSH exec channels and SFTP sessions opened so far (each costs at least one network round trip).
        self.round_trips = 0
        self._conn: Connection | None = None
        self._workspace: str | None = None

    # --- connection -------------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        *,
        pod_id: str,
        host: str,
        port: int,
        key_path: Path,
        store: Store,
        timeout: float = 120.0,
        user: str = "root",
    ) -> Remote:
        remote = cls(pod_id=pod_id, host=host, port=port, key_path=key_path, store=store, user=user)
        remote._open(timeout)
        return remote

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _new_connection(self, attempt_timeout: float) -> Connection:
        # An explicit empty SSHConfig and lazy config: the user's ~/.ssh/config and fabric files play no part;
        # only our key is offered (no agent, no ~/.ssh/id_*), so "too many authentication failures" cannot happen.
        config = Config(ssh_config=paramiko.SSHConfig(), lazy=True)
        conn = Connection(
            self.host,
            user=self.user,
            port=self.port,
            config=config,
            connect_timeout=max(1, round(attempt_timeout)),
            connect_kwargs={
                "key_filename": str(self.key_path),
                "look_for_keys": False,
                "allow_agent": False,
                "banner_timeout": attempt_timeout,
                "auth_timeout": attempt_timeout,
            },
        )
        conn.client.set_missing_host_key_policy(PinnedHostKeyPolicy(self.store, self.pod_id, self.address))
        return conn

    def _open(self, timeout: float) -> None:
        """Connect, retrying while the pod is starting; give up with SshNotReadyError after `timeout` seconds."""
        if not self.key_path.exists():
            raise SshNotReadyError(
                f"SSH key {self.key_path} does not exist", "run `pistachio-infra up` once to create it, or pass the key"
            )
        deadline = time.monotonic() + timeout
        retrying = Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.1, min=0.1, max=2.0),
            retry=retry_if_exception(_retryable),
        )
        try:
            for attempt in retrying:
                with attempt:
                    remaining = max(1.0, deadline - time.monotonic())
                    conn = self._new_connection(min(ATTEMPT_TIMEOUT, remaining))
                    try:
                        conn.open()
                    except paramiko.BadHostKeyException as exc:  # only if something preloaded a key; be explicit
                        conn.close()
                        raise HostKeyMismatchError(
                            f"pod {self.pod_id} ({self.address}) offered an unexpected SSH host key",
                            "refusing to connect; terminate the pod and create a new one if you trust it",
                        ) from exc
                    except BaseException:
                        conn.close()
                        raise
        except RetryError as exc:
            last = exc.last_attempt.exception()
            reason = _describe(last)
            raise SshNotReadyError(
                f"SSH on pod {self.pod_id} ({self.address}) did not become ready within {timeout:g}s"
                f" (last error: {reason})",
                f"the pod may still be booting or be stuck; check it with `pistachio-infra status`, and terminate it"
                f" with `pistachio-infra down {self.pod_id}` if it stays unreachable",
            ) from last
        transport = conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_SECONDS)
        self._conn = conn

    def reconnect(self, timeout: float = 60.0) -> None:
        """Drop the current connection (if any) and open a new one, pinning-checked like the first."""
        self._close_connection()
        self._open(timeout)

    def _close_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # a dead transport may fail to close cleanly; it is gone anyway
                conn.close()

    def close(self) -> None:
        self._close_connection()

    def __enter__(self) -> Remote:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise SshNotReadyError(f"not connected to pod {self.pod_id}", "call Remote.connect() first")
        return self._conn

    def _transport(self) -> paramiko.Transport | None:
        return self.connection.client.get_transport()

    def channel(self, *, timeout: float = 60.0) -> paramiko.Channel:
        """A fresh session channel on this connection (for streaming transfers)."""
        self.round_trips += 1
        return open_channel(self._transport(), self.pod_id, timeout=timeout)

    @property
    def connected(self) -> bool:
        transport = self._conn.client.get_transport() if self._conn is not None else None
        return transport is not None and transport.is_active()

    def sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session (opened once per connection)."""
        conn = self.connection
        if getattr(conn, "_sftp", None) is None:
            self.round_trips += 1
        return conn.sftp()

    def resumable(self, transfer_once: Callable[[], T]) -> T:
        """Run an idempotent call, reconnecting after a dropped connection (transfers: manifests skip what arrived
        intact; detached jobs: see above)."""
        for attempt in range(TRANSFER_ATTEMPTS):
            try:
                return transfer_once()
            except SshConnectionLostError:
                if attempt == TRANSFER_ATTEMPTS - 1:
                    raise
                self.reconnect(RECONNECT_TIMEOUT)
        raise AssertionError("unreachable")

    # --- commands ---------------------------------------------------------------------------------------

    def exec(self, script: str, *, env: dict[str, str] | None = None, timeout: float | None = None) -> ExecResult:
        """Run a shell script on the pod (sent over stdin) and return raw bytes; used by jobs and transfers."""
        self.round_trips += 1
        return exec_script(self._transport(), self.pod_id, script, env=env, timeout=timeout)

    def run(
        self,
        command: str,
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        script = command if cwd is None else f"cd -- {shlex.quote(cwd)} || exit 1\n{command}"
        secrets = [v for v in (env or {}).values() if v]
        try:
            raw = self.exec(script, env=env, timeout=timeout)
        except ExecTimeout:
            raise RemoteCommandError(
                pod_id=self.pod_id, command=redact(command, secrets), exit_code=None, stderr_tail="", timeout=timeout
            ) from None
        result = RunResult(
            stdout=raw.stdout.decode("utf-8", "replace"),
            stderr=raw.stderr.decode("utf-8", "replace"),
            exit_code=raw.exit_code,
        )
        if check and result.exit_code != 0:
            raise RemoteCommandError(
                pod_id=self.pod_id,
                command=redact(command, secrets),
                exit_code=result.exit_code,
                stderr_tail=redact(_tail(result.stderr), secrets),
                stdout=redact(_tail(result.stdout), secrets),
            )
        return result

    @property
    def workspace(self) -> str:
        """The pod's workspace directory: $PISTACHIO_WORKSPACE (the sandbox sets it) or /workspace."""
        if self._workspace is None:
            probe = 'printf %s "${PISTACHIO_WORKSPACE:-/workspace}"'
            self._workspace = self.resumable(lambda: self.run(probe)).stdout.strip()
        return self._workspace

    @property
    def jobs_dir(self) -> str:
        """Where detached jobs keep pid, start, exit_code and log: `{workspace}/.pistachio/jobs/<name>/`."""
        return f"{self.workspace.rstrip('/')}/{jobs.JOBS_DIR}"

    # --- detached jobs (jobs.py) ------------------------------------------------------------------------

    # Each call is retried after an SSH drop (reconnecting with the same host-key pin): reads are idempotent, and a
    # start is made so by its launch id (see jobs.py), so a drop while a session opens no longer ends the stage.

    def start_detached(
        self, name: str, command: str, *, env: dict[str, str] | None = None, cwd: str | None = None
    ) -> jobs.DetachedJob:
        launch_id = uuid.uuid4().hex
        return self.resumable(lambda: jobs.start_detached(self, name, command, env=env, cwd=cwd, launch_id=launch_id))

    def job(self, name: str) -> jobs.DetachedJob | None:
        return self.resumable(lambda: jobs.job(self, name))

    def kill_job(self, name: str, signal: str = "TERM") -> None:
        self.resumable(lambda: jobs.kill_job(self, name, signal))

    def read_log(self, name: str, offset: int = 0) -> tuple[bytes, int]:
        return self.resumable(lambda: jobs.read_log(self, name, offset))

    def follow(
        self,
        name: str,
        *,
        offset: int = 0,
        on_output: Callable[[str], None],
        poll: float = 0.5,
        reconnect_timeout: float = 60.0,
    ) -> int:
        return jobs.follow(
            self, name, offset=offset, on_output=on_output, poll=poll, reconnect_timeout=reconnect_timeout
        )

    # --- transfers (transfer.py) ------------------------------------------------------------------------

    def sha256(self, paths: list[str]) -> dict[str, str]:
        return transfer.remote_sha256(self, paths)

    def put_tree(
        self,
        local: Path,
        remote: str,
        *,
        progress: bool = True,
        include: Callable[[str], bool] | None = None,
    ) -> transfer.TransferStats:
        return self.resumable(lambda: transfer.put_tree(self, Path(local), remote, progress=progress, include=include))

    def get_file(self, remote: str, local: Path, *, expected_sha256: str | None = None, progress: bool = True) -> str:
        return self.resumable(
            lambda: transfer.get_file(self, remote, Path(local), expected_sha256=expected_sha256, progress=progress)
        )

    def get_tree(
        self,
        remote: str,
        local: Path,
        *,
        include: Callable[[str], bool] | None = None,
        progress: bool = True,
    ) -> transfer.TransferStats:
        return self.resumable(lambda: transfer.get_tree(self, remote, Path(local), include=include, progress=progress))
