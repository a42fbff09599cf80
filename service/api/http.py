"""The ASGI adapter: strawberry's GraphQL view with this service's context and transports.

Every HTTP request but a browser's visit to the GraphiQL page is authenticated (and counted
against its caller's rate limit) before strawberry sees it; a WebSocket connection is when its
``connection_init`` arrives (see `service.api.access`), and again at every ``subscribe`` and
whenever its credential may have ended (`CredentialBoundSubscriptions`).

Responses follow the GraphQL-over-HTTP specification: a client that accepts
``application/graphql-response+json`` gets that media type, and a request error (a document
that does not parse or validate, variables that do not coerce: nothing was executed) is
status 400 with no ``data`` entry; other clients get ``application/json`` and 200, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from decimal import Decimal
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from service.access.auth import Authenticator
from service.api.access import Gate
from service.api.context import Context
from service.api.errors import ApiError
from service.api.feed import TransitionFeed
from service.api.schema import build_schema
from service.config import Settings
from service.db import exact

_PRINCIPAL = "tierwise.principal"
# The request's context, closed (its connection given back) when the request ends.
_CONTEXT = "tierwise.context"
# Set on a request's scope by `process_result`, read where the response starts.
_MEDIA = "tierwise.response_media"
_REQUEST_ERROR = "tierwise.request_error"

GRAPHQL_RESPONSE = "application/graphql-response+json"


def accepts(accept: str | None, media_type: str) -> bool:
    """Whether an ``Accept`` header lists ``media_type`` itself, with a quality above 0."""
    for entry in (accept or "").split(","):
        name, *parameters = (part.strip() for part in entry.split(";"))
        if name.lower() != media_type:
            continue
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            return True
    return False


def _is_request_error(result: ExecutionResult) -> bool:
    """Nothing was executed: errors without a path (parsing, validation, variables, limits),
    and no data. (A field's error has a path, also when it nulls the whole result.)"""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(error.path is None for error in errors)


# graphql-transport-ws' close code for a connection that may no longer go on ("Forbidden", as
# for a refused connection_init); the reason says why (a close reason holds 123 bytes at most).
CREDENTIAL_ENDED = 4403
# How often an API key's connection looks at its key again (from the cache while it is fresh,
# so a revocation shows within TIERWISE_API_KEY_CACHE_SECONDS and this).
KEY_CHECK_SECONDS = 1.0


class CredentialBoundSubscriptions(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with the connection's credential held to account: every
    ``subscribe`` verifies it again, and the connection is closed with `CREDENTIAL_ENDED` as
    soon as it stops verifying: when the JWT expires, or within the key cache period after the
    API key is revoked. (Before, subscriptions outlived both.)"""

    watcher: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.watcher is None:
            self.watcher = asyncio.create_task(self._watch())

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and not await self._holds():
            return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        if self.watcher is not None and self.watcher is not asyncio.current_task():
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        await super().shutdown()

    async def _holds(self) -> bool:
        """Whether the credential still verifies; if not, the connection is closed."""
        view = cast("TierwiseGraphQL", self.view)
        assert self.context.request is not None
        ended = await view.gate.still_valid(self.context.request, self.context.connection_params)
        if ended is None:
            return True
        reason = ended.encode()[:123].decode(errors="ignore")
        await self.websocket.close(code=CREDENTIAL_ENDED, reason=reason)
        return False

    async def _watch(self) -> None:
        caller = self.context.principal
        while True:
            if caller is not None and caller.expires_at is not None:
                # A JWT verifies until it expires: look again only then.
                await asyncio.sleep(max(KEY_CHECK_SECONDS, caller.expires_at - time.time()))
            else:
                await asyncio.sleep(KEY_CHECK_SECONDS)
            if not await self._holds():
                return


class TierwiseGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = CredentialBoundSubscriptions

    def __init__(self, engine: AsyncEngine, settings: Settings, feed: TransitionFeed) -> None:
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql" if settings.graphiql else None,
            # The legacy `graphql-ws` protocol stays off (it has had an auth bypass).
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.engine = engine
        self.settings = settings
        self.feed = feed
        self.gate = Gate(settings, Authenticator(settings, engine))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            # The IDE page itself holds no data; its queries carry the token.
            if not self.should_render_graphql_ide(self.request_adapter_class(request)):
                admitted = await self.gate.http(request)
                if isinstance(admitted, Response):
                    await admitted(scope, receive, send)
                    return
                scope[_PRINCIPAL] = admitted
            try:
                await super().__call__(scope, receive, _negotiated(scope, send))
            finally:
                # Also after a failure or a cancellation (the client went away): the shared
                # connection's transaction ends, with the tenant's settings, before reuse.
                context = scope.get(_CONTEXT)
                if context is not None:
                    await context.close()
            return
        await super().__call__(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """A request body: numbers with a point or exponent as decimals, never binary floats
        (an amount or attribute sent as a JSON number keeps its every digit); no field of
        the schema is a Float input."""
        return json.loads(data, parse_float=Decimal)

    def encode_json(self, data: object) -> str | bytes:
        """A response; one holding decimals (jsonb read exactly: attributes, parameters) has
        them written digit for digit (service.db.exact), any other by the faster json module."""
        try:
            return json.dumps(data, separators=(",", ":"))
        except TypeError:
            return exact.dumps(data)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        processed = await super().process_result(request, result)
        if accepts(request.headers.get("accept"), GRAPHQL_RESPONSE):
            request.scope[_MEDIA] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
            if _is_request_error(result):
                request.scope[_REQUEST_ERROR] = True
                processed.pop("data", None)
        return processed

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        context = Context(
            self.engine, request.scope.get(_PRINCIPAL), self.settings, self.feed, request
        )
        if isinstance(request, Request):
            request.scope[_CONTEXT] = context
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        assert context.request is not None
        try:
            context.principal = await self.gate.websocket(
                context.request, context.connection_params
            )
        except ApiError as error:
            payload: dict[str, Any] = {"message": error.message, **error.extensions}
            raise ConnectionRejectionError(payload) from None
        acknowledged: UnsetType = UNSET  # a plain connection_ack
        return acknowledged


def _negotiated(scope: Scope, send: Send) -> Send:
    """``send`` with the media type and status `process_result` chose for the response."""

    async def send_negotiated(message: Message) -> None:
        media = scope.get(_MEDIA)
        if message["type"] == "http.response.start" and media is not None:
            headers = [
                (name, value) for name, value in message["headers"] if name != b"content-type"
            ]
            headers.append((b"content-type", media.encode()))
            status = 400 if scope.get(_REQUEST_ERROR) else message["status"]
            message = {**message, "headers": headers, "status": status}
        await send(message)

    return send_negotiated
