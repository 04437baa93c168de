"""Secrets: read from the environment or the 0600 credentials file, never written anywhere else.

`redact()` is applied to anything that might echo a secret back (command lines, logs, reports).
"""

from __future__ import annotations

import contextlib
import stat
import tomllib
from pathlib import Path

from .errors import CredentialsError
from .paths import credentials_path
from .settings import SECRET_NAMES, get_settings

HOW_TO_GET = {
    "RUNPOD_API_KEY": "create one at RunPod console → Settings → API Keys, then `export RUNPOD_API_KEY=...`",
    "HF_TOKEN": "create a read token at huggingface.co/settings/tokens, then `export HF_TOKEN=...`",
    "WANDB_API_KEY": "optional: copy it from wandb.ai/authorize, then `export WANDB_API_KEY=...`",
}


def _file_secrets(path: Path | None = None) -> dict[str, str]:
    path = path or credentials_path()
    if not path.exists():
        return {}
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CredentialsError(
            f"{path} is readable by other users (mode {mode:o})", f"run `chmod 600 {path}`"
        )
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return {k: str(v) for k, v in data.items() if k in SECRET_NAMES and v}


def get_secret(name: str, required: bool = False) -> str | None:
    value = get_settings().secret(name) or _file_secrets().get(name)
    if required and not value:
        raise CredentialsError(f"{name} is not set", HOW_TO_GET.get(name, f"export {name}=..."))
    return value or None


def known_secrets() -> list[str]:
    values = [get_settings().secret(n) for n in SECRET_NAMES]
    with contextlib.suppress(CredentialsError):
        values += list(_file_secrets().values())
    return [v for v in values if v and len(v) >= 6]


def redact(text: str, extra: list[str] | None = None) -> str:
    """Replace every known secret value in `text` with `***`."""
    for secret in [*known_secrets(), *(extra or [])]:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text
