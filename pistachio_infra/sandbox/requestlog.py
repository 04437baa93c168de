"""A debug log of the API requests the sandbox answers, written to server.log.

On with `pistachio-infra sandbox up --log-requests` or PISTACHIO_SANDBOX_LOG_REQUESTS=1 in the server's environment.
One line per request: method, path (query string with any `api_key` masked) or, for /graphql, the operation name
and root fields, then the status and the duration. Request headers (Authorization) and bodies are never written.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qsl, urlencode

ENV = "PISTACHIO_SANDBOX_LOG_REQUESTS"
log = logging.getLogger("pistachio.sandbox.requests")
MAX_BODY = 256 * 1024  # bigger GraphQL bodies are logged without their operation


def enabled() -> bool:
    from ..settings import get_settings

    return get_settings().sandbox_log_requests


def safe_query(raw: bytes) -> str:
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    return urlencode([(k, "***" if k.lower() in ("api_key", "apikey", "key", "token") else v) for k, v in pairs])


def graphql_operation(body: bytes) -> str:
    """`name(field, field)` of the GraphQL document in a request body; "?" when it cannot be read."""
    from graphql import GraphQLError, OperationDefinitionNode, parse

    try:
        payload = json.loads(body)
        document = parse(payload["query"])
    except (ValueError, KeyError, TypeError, GraphQLError):
        return "?"
    parts = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            name = definition.name.value if definition.name else payload.get("operationName") or "anonymous"
            fields = [sel.name.value for sel in definition.selection_set.selections if hasattr(sel, "name")]
            parts.append(f"{definition.operation.value} {name}({', '.join(fields)})")
    return "; ".join(parts) or "?"


class RequestLog:
    """ASGI middleware: logs each HTTP request at DEBUG once its response has started."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = bytearray()
        status = [0]
        graphql = scope.get("path") == "/graphql"

        async def receive_and_keep():
            message = await receive()
            if graphql and message.get("type") == "http.request" and len(body) < MAX_BODY:
                body.extend(message.get("body", b""))
            return message

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_note)
        finally:
            what = scope.get("path", "")
            if scope.get("query_string"):
                what += "?" + safe_query(scope["query_string"])
            if graphql:
                what += " " + graphql_operation(bytes(body))
            log.debug("%s %s -> %s in %.1f ms", scope.get("method"), what, status[0] or "no answer",
                      (time.perf_counter() - started) * 1000)
