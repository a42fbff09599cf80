"""What every resolver gets: the engine, the verified caller, the settings, and this request's
DataLoaders (fresh per request, so nothing cached leaks between requests or tenants).

The tenant is the caller's, and only the caller's: the tenant of its verified token
(`service.api.access` authenticates every request before a resolver runs).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import HTTPConnection
from strawberry.types import Info as StrawberryInfo

from service.access.auth import Principal
from service.api.errors import UNAUTHENTICATED, ApiError
from service.api.feed import TransitionFeed
from service.api.loaders import Loaders
from service.config import Settings
from service.db.database import tenant_transaction


@dataclass
class Context:
    engine: AsyncEngine
    # None only on a WebSocket whose connection_init has not been accepted yet (no operation
    # runs before it is).
    principal: Principal | None
    settings: Settings
    feed: TransitionFeed
    request: HTTPConnection | None = None
    # A WebSocket's connection_init payload (set by strawberry's protocol handler).
    connection_params: dict[str, Any] | None = None

    @property
    def caller(self) -> Principal:
        if self.principal is None:
            raise ApiError(UNAUTHENTICATED, "authentication required")
        return self.principal

    @property
    def tenant(self) -> str:
        return self.caller.tenant

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.engine, self.tenant)

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction confined to the request's tenant by row-level security."""
        return tenant_transaction(self.engine, self.tenant)


Info = StrawberryInfo[Context, None]
