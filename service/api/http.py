"""The ASGI adapter: strawberry's GraphQL view with this service's context and transports."""

from __future__ import annotations

from cross_web import HTTPException
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from service.api.context import Context, request_tenant
from service.api.errors import ApiError
from service.api.feed import TransitionFeed
from service.api.schema import build_schema
from service.config import Settings


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

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        try:
            tenant = request_tenant(request, self.settings)
        except ApiError as error:
            raise HTTPException(400, error.message) from None
        return Context(self.engine, tenant, self.settings, self.feed)
