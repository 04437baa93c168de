"""Errors a user can fix. The CLI prints them as one line (cause, then fix) and exits non-zero.

Exit codes (README "Exit codes"): 0 done; 1 the run failed (training, captions, harvest, …) or was declined;
2 usage (bad option or argument, or a question with no terminal to ask it on); 3 bad configuration, data,
credentials or a missing tool (nothing was rented); 4 the cloud failed (RunPod API, capacity, SSH to a pod);
130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_CLOUD = 4
EXIT_INTERRUPTED = 130


class PistachioError(Exception):
    """A problem the user can fix: `cause` says what is wrong, `fix` says what to do about it."""

    exit_code = EXIT_FAILED

    def __init__(self, cause: str, fix: str | None = None) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.cause} — {self.fix}" if self.fix else self.cause


class ConfigError(PistachioError):
    """pistachio.toml, a job spec or a command-line option is invalid."""

    exit_code = EXIT_CONFIG


class DatasetError(PistachioError):
    """The image folder cannot be trained on as it is."""

    exit_code = EXIT_CONFIG


class UsageError(PistachioError):
    """The command line cannot be acted on as given (like click's usage errors)."""

    exit_code = EXIT_USAGE


class CredentialsError(PistachioError):
    """A credential is missing or refused."""

    exit_code = EXIT_CONFIG


class MissingToolError(PistachioError):
    """A program the command needs (sshd, pulumi, …) is not installed."""

    exit_code = EXIT_CONFIG


class CloudError(PistachioError):
    """The cloud failed us: RunPod's API, capacity, a pod's SSH."""

    exit_code = EXIT_CLOUD
