"""Errors a user can fix. The CLI prints them as one line (cause, then fix) and exits non-zero."""

from __future__ import annotations


class PistachioError(Exception):
    """A problem the user can fix: `cause` says what is wrong, `fix` says what to do about it."""

    exit_code = 1

    def __init__(self, cause: str, fix: str | None = None) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.cause} — {self.fix}" if self.fix else self.cause


class ConfigError(PistachioError):
    """pistachio.toml, a job spec or a command-line option is invalid."""

    exit_code = 2


class DatasetError(PistachioError):
    """The image folder cannot be trained on as it is."""

    exit_code = 2


class CredentialsError(PistachioError):
    """A credential is missing or refused."""


class MissingToolError(PistachioError):
    """A program the command needs (sshd, pulumi, …) is not installed."""
