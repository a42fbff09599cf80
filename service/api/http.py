"""The ASGI adapter: strawberry's GraphQL view with this service's context and transports.

Every HTTP request but a browser's visit to the GraphiQL page is authenticated (and counted
against its caller's rate limit) before strawberry sees it; a WebSocket connection is when its
``connection_init`` arrives (see `service.api.access`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from service.access.auth import Authenticator
from service.api.access import Gate
from service.api.context import Context
from service.api.errors import ApiError
from service.api.feed import TransitionFeed
from service.api.schema import build_schema
from service.config import Settings

_PRINCIPAL = "tierwise.principal"


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
        await super().__call__(scope, receive, send)

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
