"""Observing the HTTP side: request ids, request and operation metrics, and `/metrics`.

`RequestObserver` wraps the whole app (pure ASGI, so it sees WebSocket connections too and
keeps context variables intact): it takes the gateway's ``X-Request-ID`` (or makes one), sets
it for everything logged while the request runs, echoes it in the response, and counts the
request by route path. `record_operation` is the GraphQL side: one count and one latency per
operation, by operation name and type.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.types import ExecutionContext

from service import metrics
from service.logs import REQUEST_ID

REQUEST_ID_HEADER = "x-request-id"
# What a gateway's id may look like to be adopted (uuids, hex, W3C trace ids, ...): anything
# else (too long, spaces, control characters) is replaced by an id of our own.
_GOOD_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# Paths that are not routes are counted under one label, so scanners cannot grow the series.
OTHER_PATH = "other"


def request_id(given: str | None) -> str:
    """The gateway's request id if it is a sane one, else a new one (32 hex digits)."""
    if given is not None and _GOOD_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestObserver:
    """ASGI middleware: request id in and out, and the `tierwise_http_*` metrics."""

    def __init__(self, app: ASGIApp, paths: Iterable[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER.encode():
                given = value.decode("latin-1")
                break
        rid = request_id(given)
        token = REQUEST_ID.set(rid)
        path = scope["path"] if scope["path"] in self.paths else OTHER_PATH
        method = scope.get("method", "WEBSOCKET")
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.accept"):
                status = message["status"] if message["type"] == "http.response.start" else 101
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "websocket.close" and status == 500:
                status = 403  # refused before it was accepted
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.HTTP_REQUESTS.labels(method, path, str(status)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(method, path).observe(time.perf_counter() - started)
            REQUEST_ID.reset(token)


# Operation names are the client's choice: past this many distinct ones a process counts the
# rest as "other", so a client cannot grow the metrics without bound.
MAX_OPERATION_NAMES = 200
_names: set[str] = set()
_names_lock = threading.Lock()


def _operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    with _names_lock:
        if name in _names:
            return name
        if len(_names) < MAX_OPERATION_NAMES:
            _names.add(name)
            return name
    return "other"


def record_operation(context: ExecutionContext, started: float) -> None:
    """`tierwise_graphql_operations` and their latency (since ``started``, a perf_counter), by
    operation name and type; an operation that did not parse or validate is counted with type
    ``invalid``."""
    try:
        kind = context.operation_type.value
        name = _operation_label(context.operation_name)
    except Exception:  # no document (it did not parse) or no such operation in it
        kind, name = "invalid", "invalid"
    result = context.result
    failed = bool(context.pre_execution_errors) or bool(getattr(result, "errors", None))
    metrics.GRAPHQL_OPERATIONS.labels(name, kind, "error" if failed else "ok").inc()
    metrics.GRAPHQL_OPERATION_SECONDS.labels(name, kind).observe(time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus scrape target (unauthenticated: keep it on an internal network)."""
    body, content_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=None, headers={"content-type": content_type})
