"""Signals that stop a command must not stop its teardown.

`interruptible()` turns SIGTERM and SIGHUP into an exception (as Ctrl-C already is), so `finally` blocks run;
`shielded()` marks teardown: while inside, Ctrl-C, SIGTERM and SIGHUP are noted and announced, never raised, so a
second Ctrl-C cannot skip terminating a pod; after a first signal has been raised, later ones are never raised
either (the program is already unwinding towards its teardown). A signal that arrived during a shield is raised
once the outermost shield ends, unless an exception is already on its way out. Handlers can only be set from the
main thread; elsewhere both context managers still nest correctly but leave signal handling to the main thread.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class TerminatedBySignal(SystemExit):
    """SIGTERM or SIGHUP: unwinds like SystemExit (exit status 128 + signal number), running every `finally`."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(128 + signum)


_lock = threading.RLock()
_guard_depth = 0
_shield_depth = 0
_shield_what: list[str] = []
_pending: list[int] = []
_previous: dict[int, object] = {}
_stopping = False  # a signal was raised inside the current interruptible() scope


def _exception_for(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else TerminatedBySignal(signum)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _stopping
    if _shield_depth > 0 or _stopping:
        # Already unwinding (a first signal was raised) or tearing down: never raise again, or the second
        # Ctrl-C could land between the first one's `except` and the teardown's shield and skip it.
        if _shield_depth > 0:
            _pending.append(signum)
        what = _shield_what[-1] if _shield_what else "stopping and tearing down"
        name = signal.Signals(signum).name
        print(f"\n{name} received: still {what}; it finishes first.", file=sys.stderr, flush=True)
        return
    _stopping = True
    raise _exception_for(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interruptible() -> Iterator[None]:
    """Install the handlers for the duration (nested uses share one installation)."""
    global _guard_depth, _stopping
    install = _main_thread()
    with _lock:
        if install and _guard_depth == 0:
            for sig in HANDLED:
                _previous[sig] = signal.signal(sig, _handler)
        if install:
            _guard_depth += 1
    try:
        yield
    finally:
        with _lock:
            if install:
                _guard_depth -= 1
                if _guard_depth == 0:
                    _stopping = False
                    for sig, old in _previous.items():
                        signal.signal(sig, old)  # type: ignore[arg-type]
                    _previous.clear()


@contextmanager
def shielded(what: str = "tearing down") -> Iterator[None]:
    """Run the body to its end whatever signals arrive (SIGKILL excepted)."""
    global _shield_depth
    with _lock:
        _shield_depth += 1
        _shield_what.append(what)
    in_flight = sys.exc_info()[1] is not None
    try:
        yield
    finally:
        with _lock:
            _shield_depth -= 1
            _shield_what.pop()
            outermost = _shield_depth == 0
            pending = list(_pending) if outermost else []
            if outermost:
                _pending.clear()
        if pending and not in_flight and sys.exc_info()[1] is None and _main_thread():
            raise _exception_for(pending[0])
