"""What every resolver gets: the engine, the verified caller, the settings, and this request's
DataLoaders (fresh per request, so nothing cached leaks between requests or tenants).

The tenant is the caller's, and only the caller's: the tenant of its verified token
(`service.api.access` authenticates every request before a resolver runs).

A query over HTTP reads through one connection (`RequestConnection`, shared): its loaders'
batches and its resolvers' `transaction` blocks take turns on it, confined to the tenant
once; the HTTP adapter closes it when the request ends, however it ends. A mutation's
`transaction` blocks are transactions of their own (committed each), and its loaders', as a
subscription's, take one transaction per batch.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import HTTPConnection, Request
from strawberry.types import Info as StrawberryInfo
from strawberry.types.graphql import OperationType

from service.access.auth import Principal
from service.api.errors import UNAUTHENTICATED, ApiError
from service.api.feed import TransitionFeed
from service.api.loaders import Loaders
from service.config import Settings
from service.db.database import RequestConnection, tenant_transaction
from service.db.ids import Ids, codec, known_codec

log = logging.getLogger(__name__)


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
    # Set for a query over HTTP before it runs (`service.api.http`): its reads share one
    # connection, which `close` gives back.
    shares_connection: bool = False
    _ids: Ids | None = field(default=None, init=False, repr=False)
    _ids_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def caller(self) -> Principal:
        if self.principal is None:
            raise ApiError(UNAUTHENTICATED, "authentication required")
        return self.principal

    @property
    def tenant(self) -> str:
        return self.caller.tenant

    @cached_property
    def database(self) -> RequestConnection:
        """This request's reads' connection (shared by a query over HTTP, else one
        transaction per use)."""
        return RequestConnection(self.engine, self.tenant, shared=self.shares_connection)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.database.turn, self.tenant)

    def ids_at_hand(self) -> Ids | None:
        """`ids` when they need no database read (the key is configured, or this engine has
        read it already), else None: then `ids`. For resolvers that answer without awaiting."""
        if self._ids is None:
            found = known_codec(self.engine, self.settings.id_key)
            if found is not None:
                self._ids = found.of(self.tenant)
        return self._ids

    async def ids(self) -> Ids:
        """The caller's tenant's ids (`service.db.ids`): what a row's internal id is shown as,
        and read back from."""
        # One reading of the key, not one per resolver of the request's first rows.
        async with self._ids_lock:
            if self._ids is None:
                found = await codec(self.engine, self.settings.id_key, self.transaction)
                self._ids = found.of(self.tenant)
        return self._ids

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction confined to the request's tenant by row-level security: in a query,
        a turn on the request's connection; in a mutation, a transaction of its own."""
        if self.shares_connection:
            return self.database.turn()
        return tenant_transaction(self.engine, self.tenant)

    async def close(self) -> None:
        """Give back the request's connection, if it took one (at the end of the request)."""
        if "database" not in self.__dict__:
            return
        try:
            await self.database.close()
        except Exception:  # the answer is out; a failed commit of reads is only logged
            log.warning("ending a request's database transaction failed", exc_info=True)


def share_reads(context: object, operation: OperationType | None) -> None:
    """Before an operation runs: a query over HTTP (whose adapter closes the context when the
    request ends) reads through one shared connection."""
    if (
        isinstance(context, Context)
        and isinstance(context.request, Request)
        and operation is OperationType.QUERY
        and "database" not in context.__dict__
    ):
        context.shares_connection = True


Info = StrawberryInfo[Context, None]
