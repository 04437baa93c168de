"""Byte progress bars for transfers. rich.progress is imported only when a bar is actually shown."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _noop(_: int) -> None:
    return None


@contextmanager
def byte_progress(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n_bytes)`; draws a rich bar on stderr when enabled and stderr is a terminal."""
    if not enabled or total <= 0 or not sys.stderr.isatty():
        yield _noop
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
