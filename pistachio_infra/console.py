"""The one way commands make a rich Console.

On a terminal: its width, colours unless NO_COLOR is set (rich reads it). Piped (scripts, logs, `| tee`): nothing
wraps or truncates — a line is one line, and tables get room for whole numbers, paths and ids.
"""

from __future__ import annotations

import sys
from typing import Any

PIPED_WIDTH = 1000  # wide enough that no table column is squeezed; tables take only the width they need


def make_console(*, stderr: bool = False, quiet: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(highlight=False, stderr=stderr, soft_wrap=not tty, width=None if tty else PIPED_WIDTH,
                   quiet=quiet)
