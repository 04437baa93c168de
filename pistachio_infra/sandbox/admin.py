"""Admin routes under /_sandbox/ (account key required, except health): faults, preemption, SSH drops, billing,
pod processes, the raw pod table, scenario swaps and shutdown. control.Admin is their client."""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ConfigError
from .cloud import ApiError, SandboxCloud
from .faults import FaultError
from .rest import bearer_token, problem
from .scenario import load_scenario


class AdminApi:
    def __init__(self, cloud: SandboxCloud, *, on_shutdown, info: dict[str, Any]) -> None:
        self.cloud = cloud
        self.on_shutdown = on_shutdown
        self.info = info  # pid, boot id, ...

    def guard(self, handler):
        async def run(request: Request) -> Response:
            if bearer_token(request) != self.cloud.api_key:
                return problem(401, "the admin routes need the sandbox account key")
            try:
                body = await request.json() if request.method in ("POST", "PUT") and await request.body() else {}
                return await handler(request, body)
            except ApiError as exc:
                return problem(exc.status, exc.detail)
            except (FaultError, ConfigError) as exc:
                return problem(400, str(exc))

        return run

    def routes(self) -> list[Route]:
        g = self.guard
        return [
            Route("/_sandbox/health", self.health, methods=["GET"]),
            Route("/_sandbox/faults", g(self.list_faults), methods=["GET"]),
            Route("/_sandbox/faults", g(self.inject), methods=["POST"]),
            Route("/_sandbox/faults", g(self.clear_faults), methods=["DELETE"]),
            Route("/_sandbox/pods", g(self.pods), methods=["GET"]),
            Route("/_sandbox/pods/{id}/preempt", g(self.preempt), methods=["POST"]),
            Route("/_sandbox/pods/{id}/drop-ssh", g(self.drop_ssh), methods=["POST"]),
            Route("/_sandbox/pods/{id}/processes", g(self.processes), methods=["GET"]),
            Route("/_sandbox/billing", g(self.billing), methods=["GET"]),
            Route("/_sandbox/scenario", g(self.set_scenario), methods=["PUT"]),
            Route("/_sandbox/shutdown", g(self.shutdown), methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "pid": os.getpid(), "boot": self.info.get("boot"),
                             "host_ready": self.cloud.host is not None, "host_error": self.cloud.host_error})

    async def list_faults(self, request, body):
        return JSONResponse({"faults": self.cloud.faults.snapshot()})

    async def inject(self, request, body):
        params = dict(body)
        kind = params.pop("kind", "")
        fault = self.cloud.faults.add(kind, **params)
        return JSONResponse(fault.as_dict(), status_code=201)

    async def clear_faults(self, request, body):
        self.cloud.faults.clear(request.query_params.get("kind"))
        return Response(status_code=204)

    async def pods(self, request, body):
        pods = self.cloud.store.pods(include_terminated=True)
        return JSONResponse({"pods": [{**asdict(p), "volume_id": p.volume_id,
                                       "workspace": str(self.cloud.workspace(p))} for p in pods]})

    async def preempt(self, request, body):
        pod = await self.cloud.preempt(request.path_params["id"])
        return JSONResponse({"id": pod.id, "status": pod.status})

    async def drop_ssh(self, request, body):
        await self.cloud.drop_ssh(request.path_params["id"])
        return Response(status_code=204)

    async def processes(self, request, body):
        pod_id = request.path_params["id"]
        host = self.cloud.host
        pids = await asyncio.to_thread(host.processes, pod_id) if host is not None else []
        return JSONResponse({"pids": list(pids)})

    async def billing(self, request, body):
        return JSONResponse({"billed": self.cloud.billed(), "balance": self.cloud.balance()})

    async def set_scenario(self, request, body):
        self.cloud.apply_scenario(load_scenario(body.get("path")))
        return JSONResponse({"faults": self.cloud.faults.snapshot()})

    async def shutdown(self, request, body):
        await self.cloud.shutdown(terminate_pods=body.get("terminate_pods", True))
        self.on_shutdown()
        return JSONResponse({"ok": True})
