"""The sandbox server process: `python -m pistachio_infra.sandbox.server --home DIR [--scenario FILE]`.

One process, two ports on 127.0.0.1: the RunPod API (REST v2 under /v2, GraphQL at /graphql, admin under
/_sandbox) and the Hugging Face hub stand-in. It answers as soon as it listens and the stand-in git repos exist,
then writes home/info.json (0600: ports, account key, pid, repos) for control.py. Slow set-up runs after that:
the pod image and PodHost in the background (pods wait in PROVISIONING, like an image pull) and the HF seed
(built on the first hub request, which waits for it). Ports are reused across restarts when free, so clients
keep their URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger("pistachio.sandbox")


def image_cache_dir() -> Path:
    """Where the pod image and the stand-in repos are built once and reused (outside any sandbox home, so
    `reset` keeps them); PISTACHIO_SANDBOX_IMAGE_CACHE overrides it."""
    from ..settings import get_settings

    override = get_settings().sandbox_image_cache
    if override:
        return override
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pistachio-infra")) / "sandbox-image"


def standin_repos(dest: Path) -> dict[str, Any]:
    """The stand-in git repos in `dest`: copied from a cache keyed by the stand-ins' sources (building them takes
    dozens of git commands), then pinned by `standins.build_repos`, which keeps repos that already exist."""
    import hashlib
    import shutil

    from filelock import FileLock

    from . import standins

    if not dest.exists():
        source = Path(standins.__file__).parent
        digest = hashlib.sha256()
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
        cache = image_cache_dir() / f"standin-repos-{digest.hexdigest()[:16]}"
        cache.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cache.parent / ".standin-repos.lock")):
            if not (cache / ".complete").exists():
                shutil.rmtree(cache, ignore_errors=True)
                standins.build_repos(cache)
                (cache / ".complete").touch()
        shutil.copytree(cache, dest, ignore=shutil.ignore_patterns(".complete"))
    return {name: {"url": pin.url, "commit": pin.commit} for name, pin in standins.build_repos(dest).items()}


def bind(port: int | None) -> socket.socket:
    for candidate in ([port] if port else []) + [0]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        return sock
    raise OSError("no free port on 127.0.0.1")


def seconds_since_process_start() -> float:
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return float("nan")


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    tmp.replace(path)


async def in_daemon_thread(fn):
    """Run `fn` in a daemon thread (unlike asyncio.to_thread, an exiting server does not wait for it)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(lambda e=exc: future.done() or future.set_exception(e))
        else:
            loop.call_soon_threadsafe(lambda r=result: future.done() or future.set_result(r))

    threading.Thread(target=work, daemon=True, name=getattr(fn, "__name__", "work")).start()
    return await future


class LazyApp:
    """An ASGI app built on the first request (in a daemon thread); requests wait for it, or get a 503 JSON
    answer if building it failed. The HF stand-in is built this way: seeding it takes seconds and most
    sandbox uses never touch it."""

    def __init__(self, name: str, build) -> None:
        self.name = name
        self.build = build
        self.app = None
        self.error: str | None = None
        self._task: asyncio.Task | None = None

    async def _build(self) -> None:
        try:
            self.app = await in_daemon_thread(self.build)
        except Exception as exc:
            log.exception("%s could not be set up", self.name)
            self.error = f"{type(exc).__name__}: {exc}"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if self._task is None:
            self._task = asyncio.create_task(self._build())
        await asyncio.shield(self._task)
        if self.app is None:
            body = json.dumps({"error": f"{self.name} is not available: {self.error}"}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def build_api_app(cloud, admin_info: dict[str, Any], on_shutdown, extra_routes: list | None = None):
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    from .admin import AdminApi
    from .graphql_api import make_endpoint
    from .rest import RestApi, http_error

    async def crash(request, exc):
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        from .rest import problem

        return problem(500, "internal error in the sandbox server (see server.log)")

    routes = [
        *RestApi(cloud).routes(),
        Route("/graphql", make_endpoint(cloud), methods=["POST"]),
        *AdminApi(cloud, on_shutdown=on_shutdown, info=admin_info).routes(),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: crash})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pistachio_infra.sandbox.server")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--scenario", type=Path)
    args = parser.parse_args(argv)
    home: Path = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # the stand-in git repos, while the web stack imports (git runs in subprocesses, off the GIL)
    repos: dict[str, Any] = {}
    repo_error: list[str] = []

    def build_repos() -> None:
        try:
            repos.update(standin_repos(home / "git"))
        except Exception as exc:  # the API still works without them
            log.exception("stand-in repos could not be built")
            repo_error.append(f"{type(exc).__name__}: {exc}")

    repo_thread = threading.Thread(target=build_repos, name="standin-repos", daemon=True)
    repo_thread.start()

    from ..errors import PistachioError
    from .scenario import load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except PistachioError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2

    info_path = home / "info.json"
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(info_path.read_text())
    info_path.unlink(missing_ok=True)
    api_sock = bind(previous.get("api_port"))
    hf_sock = bind(previous.get("hf_port"))

    from .cloud import SandboxCloud

    cloud = SandboxCloud(home, scenario)
    boot = uuid.uuid4().hex
    asyncio.run(serve(home, cloud, scenario, api_sock, hf_sock, boot, repos, repo_error, repo_thread,
                      args.scenario))
    return 0


async def serve(home, cloud, scenario, api_sock, hf_sock, boot, repos, repo_error, repo_thread, scenario_path):
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # one handler for both servers, installed below
            yield

    servers: list[uvicorn.Server] = []

    def shutdown() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown)

    from . import pypi

    wheels = pypi.build_index(home / "pypi")  # the package index's stand-in wheels (milliseconds)
    app = build_api_app(cloud, {"boot": boot}, shutdown, pypi.routes(wheels, image_cache_dir() / "pypi-deps"))
    from . import requestlog

    if requestlog.enabled():
        requestlog.log.setLevel(logging.DEBUG)
        app = requestlog.RequestLog(app)
        log.info("request log on (%s): one DEBUG line per API request", requestlog.ENV)
    hf_app = LazyApp("the HF hub stand-in", lambda: build_hf(home))
    for application in (app, hf_app):
        config = uvicorn.Config(application, lifespan="off", log_level="warning", access_log=False, ws="none",
                                timeout_graceful_shutdown=2)
        servers.append(Server(config))
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, (api_sock, hf_sock),
                                                                               strict=True)]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)
            return
        await asyncio.sleep(0.005)
    await asyncio.to_thread(repo_thread.join)

    api_port = api_sock.getsockname()[1]
    hf_port = hf_sock.getsockname()[1]
    write_json(home / "info.json", {
        "pid": os.getpid(),
        "boot": boot,
        "home": str(home),
        "api_port": api_port,
        "hf_port": hf_port,
        "rest_url": f"http://127.0.0.1:{api_port}/v2",
        "graphql_base": f"http://127.0.0.1:{api_port}",
        "hf_endpoint": f"http://127.0.0.1:{hf_port}",
        "api_key": cloud.api_key,
        "repos": repos,
        "wheels": pypi.wheel_pins(wheels, f"http://127.0.0.1:{api_port}"),
        "index_url": pypi.index_url(f"http://127.0.0.1:{api_port}"),
        "repo_error": repo_error[0] if repo_error else None,
        "scenario": str(scenario_path) if scenario_path else None,
        "started_at": time.time(),
    })
    log.info("sandbox answering on 127.0.0.1:%d (API) and 127.0.0.1:%d (HF), %.2f s after the process started",
             api_port, hf_port, seconds_since_process_start())

    background = [
        asyncio.create_task(start_pod_host(cloud)),
        asyncio.create_task(in_daemon_thread(warm_up)),
        asyncio.create_task(cloud.run()),
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in background:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*background, return_exceptions=True)
        (home / "info.json").unlink(missing_ok=True)
        log.info("sandbox server stopped")


async def start_pod_host(cloud) -> None:
    try:
        def build():
            from .image import PodImage
            from .podhost import PodHost

            return PodHost(cloud.home, PodImage.ensure(image_cache_dir()))

        host = await in_daemon_thread(build)
    except Exception as exc:
        log.exception("the pod host could not be set up; pods will fail to start")
        cloud.attach_host(None, f"{type(exc).__name__}: {exc}")
        return
    cloud.attach_host(host)
    cloud.reconcile_after_restart()
    log.info("pod host ready (isolation: %s)", getattr(host, "isolation", "?"))


def build_hf(home: Path):
    from .hf import create_app, seed_from_manifest

    root = home / "hf"
    root.mkdir(exist_ok=True)
    seed_from_manifest(root)
    return create_app(root)


def warm_up() -> None:
    """Import and build what the first GraphQL / validated REST request needs, off the request path."""
    from . import graphql_api, openapi

    graphql_api.warm()
    openapi.warm()


if __name__ == "__main__":
    sys.exit(main())
