"""The one way commands make a rich Console.

On a terminal: its width, colours unless NO_COLOR is set (rich reads it). Piped (scripts, logs, `| tee`): nothing
wraps or truncates — a line is one line, and tables get room for whole numbers, paths and ids.
"""

from __future__ import annotations

import sys
from typing import Any

PIPED_WIDTH = 1000  # wide enough that no table column is squeezed; tables take only the width they need
VERBOSITY = 0  # -q: -1 (consoles print nothing; errors, --json and prompts still do), -v: 1, -vv: 2


def set_verbosity(level: int) -> None:
    """The global -q/-v: quiet consoles, or logging of what talks to RunPod and the pods (INFO, -vv DEBUG)."""
    import logging

    global VERBOSITY
    VERBOSITY = level
    if level > 0:
        logging.basicConfig(level=logging.INFO if level == 1 else logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(_redact_record)


def _redact_record(record: Any) -> bool:
    """Secrets never reach a log line (RunPod's GraphQL URL carries the API key as a query parameter)."""
    from .credentials import redact

    record.msg, record.args = redact(record.getMessage()), None
    return True


def make_console(*, stderr: bool = False, quiet: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(highlight=False, stderr=stderr, soft_wrap=not tty, width=None if tty else PIPED_WIDTH,
                   quiet=quiet or VERBOSITY < 0)
