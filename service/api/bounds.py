"""What one HTTP request may take: a bounded body, a bounded share of the database
connections, and no work at all once its client has gone.

`RequestBounds` is pure ASGI middleware around the app (inside `RequestObserver`, so its log
lines carry the request id):

- a body over ``max_request_bytes`` is refused with 413 before anything parses it (by its
  ``Content-Length``, or as soon as the bytes read pass the bound);
- the request's tenant transactions hold at most ``request_connections`` connections at once
  (`service.db.database.request_scope`), a WebSocket connection's subscriptions likewise;
- when the client disconnects before its answer is complete, the request's task is cancelled:
  the statement it was waiting for is cancelled in Postgres (asyncpg sends the cancel
  request) and its transaction rolls back, instead of running on for nobody.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import LIMIT_EXCEEDED
from service.db.database import request_scope

log = logging.getLogger(__name__)


class _TooLarge(Exception):
    """The body read so far passes the bound."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse_too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "errors": [
                {
                    "message": f"the request body is larger than {limit:,} bytes "
                    "(TIERWISE_MAX_REQUEST_BYTES)",
                    "extensions": {"code": LIMIT_EXCEEDED},
                }
            ]
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestBounds:
    """ASGI middleware: body size, connections per request, cancellation on disconnect."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, connections: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            with request_scope(self.connections):
                await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse_too_large(send, self.max_body_bytes)
            return
        with request_scope(self.connections):
            await self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        body_read = asyncio.Event()
        # What the client sends after its body (its disconnect), once the watcher has it:
        # from then on the watcher alone reads `receive`, and the app gets this.
        after_body: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        received = 0
        started = complete = went_away = False

        async def receive_bounded() -> Message:
            nonlocal received
            if body_read.is_set():
                return await asyncio.shield(after_body)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _TooLarge
                if not message.get("more_body", False):
                    body_read.set()
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        async def watch() -> None:
            nonlocal went_away
            await body_read.wait()
            message = await receive()
            after_body.set_result(message)
            if message["type"] == "http.disconnect" and not complete:
                went_away = True
                handler.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, receive_bounded, send_tracked)
        except _TooLarge:
            if not started:
                await _refuse_too_large(send, self.max_body_bytes)
        except asyncio.CancelledError:
            # Ours alone (not a shutdown's): the client is gone, nobody awaits an answer.
            if not went_away or handler.uncancel() > 0:
                raise
            log.info("client disconnected before its answer: request cancelled")
        finally:
            watcher.cancel()
