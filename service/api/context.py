"""What every resolver gets: the engine, the request's tenant, the settings, and this request's
DataLoaders (fresh per request, so nothing cached leaks between requests or tenants).

The tenant is decided here and only here: the configured default tenant, or the
``X-Tierwise-Tenant`` header. Authentication (issue 6) replaces `request_tenant` with the
tenant of the caller's token.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import HTTPConnection
from strawberry.types import Info as StrawberryInfo

from service.api.errors import bad_input
from service.api.feed import TransitionFeed
from service.api.loaders import Loaders
from service.config import Settings
from service.database import tenant_transaction
from service.records import FieldError, check_tenant_id

TENANT_HEADER = "x-tierwise-tenant"


def request_tenant(connection: HTTPConnection, settings: Settings) -> str:
    requested = connection.headers.get(TENANT_HEADER)
    if requested is None:
        return settings.default_tenant
    try:
        return check_tenant_id(requested)
    except FieldError as error:
        raise bad_input(str(error)) from None


@dataclass
class Context:
    engine: AsyncEngine
    tenant: str
    settings: Settings
    feed: TransitionFeed
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.engine, self.tenant)

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction confined to the request's tenant by row-level security."""
        return tenant_transaction(self.engine, self.tenant)


Info = StrawberryInfo[Context, None]
