"""The dashboard's web app (Starlette): read-only pages, their JSON poll endpoints, the bundled static files and the
job's dataset images. Every request must carry the session's token (`?token=`); anything else gets 403.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .data import DashboardData
from .pages import STATIC_DIR, Links, NotFound, is_live, page_data, render_body, render_page

FORBIDDEN = "403 forbidden: open the dashboard with the URL `pistachio-infra dashboard` printed (it holds the token)\n"


class TokenRequired(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.query_params.get("token", "")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse(FORBIDDEN, status_code=403)
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # the token never leaves in a Referer header
        return response


def create_app(data: DashboardData, token: str) -> Starlette:
    links = Links(token)

    def page(name: str, key: str | None = None):  # type: ignore[no-untyped-def]
        def endpoint(request: Request) -> Response:
            arg = request.path_params.get(key) if key else None
            try:
                content = page_data(data, name, None if arg is None else str(arg))
            except NotFound as exc:
                return PlainTextResponse(f"404: {exc}\n", status_code=404)
            return HTMLResponse(render_page(data, name, content, links, None if arg is None else str(arg)))

        return endpoint

    def api(name: str, key: str | None = None):  # type: ignore[no-untyped-def]
        def endpoint(request: Request) -> Response:
            arg = request.path_params.get(key) if key else None
            try:
                content = page_data(data, name, None if arg is None else str(arg))
            except NotFound as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            return JSONResponse({"html": render_body(name, content, links), "data": content,
                                 "live": is_live(name, content)})

        return endpoint

    def image(request: Request) -> Response:
        path = data.image_path(int(request.path_params["job_id"]), request.path_params["name"])
        if path is None:
            return PlainTextResponse("404: no such image\n", status_code=404)
        return FileResponse(path)

    routes = [
        Route("/", page("now")),
        Route("/money", page("money")),
        Route("/job/{job_id:int}", page("job", "job_id")),
        Route("/character/{name}", page("character", "name")),
        Route("/api/now", api("now")),
        Route("/api/money", api("money")),
        Route("/api/job/{job_id:int}", api("job", "job_id")),
        Route("/api/character/{name}", api("character", "name")),
        Route("/files/{job_id:int}/{name}", image),
        Mount("/static", StaticFiles(directory=STATIC_DIR)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TokenRequired, token=token)])
