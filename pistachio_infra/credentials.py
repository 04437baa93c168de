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
    "RUNPOD_API_KEY": "create one at RunPod console → Settings → API Keys, then `export RUNPOD_API_KEY=...` "
                      "(or `runpodctl config --apiKey ...`)",
    "HF_TOKEN": "create a read token at huggingface.co/settings/tokens, then `hf auth login` (or "
                "`export HF_TOKEN=...`)",
    "WANDB_API_KEY": "optional: `wandb login` (or copy it from wandb.ai/authorize and `export WANDB_API_KEY=...`)",
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


# Logins the user already has, read where their own tools keep them (only when the environment and our
# credentials file have none, and never for the sandbox, whose stand-ins get no real credential):
# - runpodctl: ~/.runpod/config.toml, top-level `apikey` (viper, case-insensitive) — runpod/runpodctl
#   cmd/root.go initConfig + cmd/config/config.go @ 001f6b9fc3e580a6d38ac2fca6dba6b4e2cf9044; runpod-python's
#   `runpod config` writes the same file as `[default] api_key`.
# - Hugging Face: huggingface_hub.get_token() (`hf auth login`'s token file under HF_HOME).
# - wandb: the netrc entry for api.wandb.ai (`wandb login`), $NETRC or ~/.netrc.
EXTERNAL_SOURCES = {
    "RUNPOD_API_KEY": "runpodctl config (~/.runpod/config.toml)",
    "HF_TOKEN": "huggingface_hub login (hf auth login)",
    "WANDB_API_KEY": "netrc (wandb login)",
}
WANDB_HOST = "api.wandb.ai"


def _runpodctl_key() -> str | None:
    path = Path.home() / ".runpod" / "config.toml"
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    top = {str(k).lower(): v for k, v in data.items()}
    profile = top.get("default") if isinstance(top.get("default"), dict) else {}
    value = top.get("apikey") or profile.get("api_key")
    return str(value) if value else None


def _hf_store_token() -> str | None:
    try:
        from huggingface_hub import get_token
    except ImportError:
        return None
    return get_token() or None


def _netrc_wandb() -> str | None:
    import netrc

    path = get_settings().netrc or Path.home() / ".netrc"
    if not path.is_file():
        return None
    try:
        auth = netrc.netrc(str(path)).authenticators(WANDB_HOST)
    except (netrc.NetrcParseError, OSError):
        return None
    return auth[2] if auth and auth[2] else None


_EXTERNAL = {"RUNPOD_API_KEY": _runpodctl_key, "HF_TOKEN": _hf_store_token, "WANDB_API_KEY": _netrc_wandb}


def _sandbox() -> bool:
    from .endpoints import sandbox_enabled

    return sandbox_enabled()


def find_secret(name: str) -> tuple[str | None, str]:
    """(value, where it came from): the environment, our credentials file, or the user's existing login."""
    from_env = get_settings().secret(name)
    if from_env:
        return from_env, "environment"
    in_file = _file_secrets().get(name)
    if in_file:
        return in_file, "credentials file"
    reader = _EXTERNAL.get(name)
    if reader is not None and not _sandbox():
        value = reader()
        if value:
            return value, EXTERNAL_SOURCES[name]
    return None, "not set"


def get_secret(name: str, required: bool = False) -> str | None:
    value, _ = find_secret(name)
    if required and not value:
        raise CredentialsError(f"{name} is not set", HOW_TO_GET.get(name, f"export {name}=..."))
    return value or None


def known_secrets() -> list[str]:
    values = [get_settings().secret(n) for n in SECRET_NAMES]
    with contextlib.suppress(CredentialsError):
        values += list(_file_secrets().values())
    if not _sandbox():
        for reader in _EXTERNAL.values():
            with contextlib.suppress(Exception):
                values.append(reader())
    return [v for v in values if v and len(v) >= 6]


def redact(text: str, extra: list[str] | None = None) -> str:
    """Replace every known secret value in `text` with `***`."""
    for secret in [*known_secrets(), *(extra or [])]:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text
