"""Serve the dashboard on 127.0.0.1 only: a socket bound to loopback (port 0 picks a free one), a fresh random token,
uvicorn on that socket. The URL with the token is known before the first request is served."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .data import DashboardData

HOST = "127.0.0.1"


@dataclass
class Served:
    url: str
    port: int
    token: str


def bind(port: int) -> socket.socket:
    from ..errors import PistachioError

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise PistachioError(f"cannot listen on {HOST}:{port} ({exc.strerror})",
                             "choose another --port, or leave it out to take a free one") from None
    sock.listen(64)
    return sock


def serve(data: DashboardData, port: int, ready: Callable[[Served], None]) -> None:
    """Run until interrupted; `ready` gets the URL once the socket listens."""
    import uvicorn

    from .app import create_app

    sock = bind(port)
    token = secrets.token_urlsafe(24)
    actual = sock.getsockname()[1]
    served = Served(url=f"http://{HOST}:{actual}/?token={token}", port=actual, token=token)
    config = uvicorn.Config(create_app(data, token), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    ready(served)
    threading.Thread(target=_warm_up, name="dashboard-warm-up", daemon=True).start()
    server.run(sockets=[sock])


def _warm_up() -> None:
    """Import the TensorBoard event reader now (seconds, once) rather than on the first job page opened."""
    import contextlib

    with contextlib.suppress(Exception):
        from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
