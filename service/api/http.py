"""The ASGI adapter: strawberry's GraphQL view with this service's context and transports.

Every HTTP request but a browser's visit to the GraphiQL page is authenticated (and counted
against its caller's rate limit) before strawberry sees it; a WebSocket connection is when its
``connection_init`` arrives (see `service.api.access`).

Responses follow the GraphQL-over-HTTP specification: a client that accepts
``application/graphql-response+json`` gets that media type, and a request error (a document
that does not parse or validate, variables that do not coerce: nothing was executed) is
status 400 with no ``data`` entry; other clients get ``application/json`` and 200, as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from service.access.auth import Authenticator
from service.api.access import Gate
from service.api.context import Context
from service.api.errors import ApiError
from service.api.feed import TransitionFeed
from service.api.schema import build_schema
from service.config import Settings

_PRINCIPAL = "tierwise.principal"
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


class TierwiseGraphQL(GraphQL[Context, None]):
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
            await super().__call__(scope, receive, _negotiated(scope, send))
            return
        await super().__call__(scope, receive, send)

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
        return Context(
            self.engine, request.scope.get(_PRINCIPAL), self.settings, self.feed, request
        )

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
