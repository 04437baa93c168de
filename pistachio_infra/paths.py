"""Where pistachio-infra keeps its state, keys and credentials.

The state dir defaults to the platform's user state dir; `PISTACHIO_HOME` overrides it (tests and the
sandbox use this to stay out of the user's real state).
"""

from __future__ import annotations

from pathlib import Path

from .settings import get_settings

APP_NAME = "pistachio-infra"


def state_dir() -> Path:
    override = get_settings().home
    if override:
        path = override
    else:
        from platformdirs import user_state_dir

        path = Path(user_state_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ssh_key_path() -> Path:
    """Private ed25519 key used for every pod; the public key sits next to it with `.pub`."""
    return state_dir() / "ssh" / "id_ed25519"


def state_db_path() -> Path:
    return state_dir() / "state.sqlite3"


def credentials_path() -> Path:
    return state_dir() / "credentials.toml"


def sandbox_dir() -> Path:
    return state_dir() / "sandbox"


def package_root() -> Path:
    """The folder holding `templates/` and `stacks/`: the source checkout, or the installed wheel's copies."""
    here = Path(__file__).resolve().parent
    if (here.parent / "templates").is_dir():
        return here.parent
    return here


def templates_dir() -> Path:
    root = package_root()
    return root / "templates" if (root / "templates").is_dir() else root / "_templates"


def data_dir() -> Path:
    return Path(__file__).resolve().parent / "data"
