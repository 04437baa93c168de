"""Scripts that run on pods: rendered from templates/ (jinja2, `q` = shell quoting) and written over SSH."""

from __future__ import annotations

import functools
import shlex
from typing import Any, Protocol

from ..paths import templates_dir

HEREDOC_END = "PISTACHIO_FILE_EOF"


class Runs(Protocol):  # the part of remote.Remote used here
    def run(
        self, command: str, *, env: dict[str, str] | None = ..., timeout: float | None = ..., check: bool = ...
    ) -> Any: ...


@functools.cache
def environment():  # type: ignore[no-untyped-def]
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def template_text(name: str) -> str:
    return (templates_dir() / name).read_text()


def write_text_command(path: str, text: str, *, mode: str = "0644") -> str:
    """A shell snippet that writes `text` to `path` atomically (heredoc; nothing on any command line)."""
    if HEREDOC_END in text:
        raise ValueError(f"{path}: text contains the heredoc delimiter")
    if not text.endswith("\n"):
        text += "\n"
    q = shlex.quote
    return (
        f"mkdir -p -- \"$(dirname -- {q(path)})\" || exit 1\n"
        f"cat > {q(path + '.tmp')} <<'{HEREDOC_END}'\n{text}{HEREDOC_END}\n"
        f"chmod {mode} {q(path + '.tmp')} && mv -f {q(path + '.tmp')} {q(path)} || exit 1\n"
    )


def write_files(remote: Runs, files: dict[str, str], *, timeout: float = 120) -> None:
    """Write several text files on the pod in one round trip."""
    script = "".join(write_text_command(path, text) for path, text in files.items())
    remote.run(script, timeout=timeout, check=True)
