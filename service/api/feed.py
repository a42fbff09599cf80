"""Committed tier changes as they happen, for the tierChanged subscriptions of one process.

Evaluation announces committed transitions with ``pg_notify`` (on any replica). One process
LISTENs on one dedicated asyncpg connection (not one of the pool's, which it would hold for
good) however many clients subscribe, and wakes the subscriptions of the announced tenant and
scheme; each then reads its new transitions by id from the table. Per scheme, runs and
incremental updates are serialised by an advisory lock held until commit, so ids commit in
order and "id > last seen" misses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.loaders import TransitionRow, transition_row, transitions_select
from service.db.database import plain_url, tenant_transaction
from service.db.tables import schemes, transitions
from service.engine.evaluation import TRANSITIONS_CHANNEL
from service.engine.schemes import unpublished

# How the listening connection shows in pg_stat_activity.
LISTENER_NAME = "tierwise-tier-changed"


class FeedLost(Exception):
    """The listening connection closed: changes from here on would go unheard."""


@dataclass(eq=False)
class _Subscriber:
    tenant: str
    scheme: str | None
    # Schemes announced since the subscriber last looked; None: the feed was lost.
    heard: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


class TransitionFeed:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._listener: Any = None
        self._subscribers: set[_Subscriber] = set()
        self._connecting = asyncio.Lock()
        self.active = 0
        """Subscriptions past their start, waiting for changes (for probes and tests)."""

    async def _listen(self) -> None:
        async with self._connecting:
            if self._listener is not None and not self._listener.is_closed():
                return
            listener = await asyncpg.connect(
                plain_url(self.engine.url), server_settings={"application_name": LISTENER_NAME}
            )
            listener.add_termination_listener(self._lost)
            await listener.add_listener(TRANSITIONS_CHANNEL, self._announced)
            self._listener = listener

    def _announced(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            tenant, scheme = str(message["tenant"]), str(message["scheme"])
        except (ValueError, KeyError, TypeError):
            return
        for subscriber in self._subscribers:
            if subscriber.tenant == tenant and subscriber.scheme in (None, scheme):
                subscriber.heard.put_nowait(scheme)

    def _lost(self, _connection: object) -> None:
        self._listener = None
        for subscriber in self._subscribers:
            subscriber.heard.put_nowait(None)

    async def _start(self, tenant: str, scheme: str | None) -> dict[str, int]:
        """The newest transition of each scheme: where a subscription starts. Raises
        `NotFound` for a ``scheme`` the tenant has not published."""
        newest = (
            select(func.max(transitions.c.id))
            .where(transitions.c.tenant_id == tenant, transitions.c.scheme_key == schemes.c.key)
            .scalar_subquery()
        )
        query = select(schemes.c.key, newest).where(schemes.c.tenant_id == tenant)
        if scheme is not None:
            query = query.where(schemes.c.key == scheme)
        async with tenant_transaction(self.engine, tenant) as connection:
            start = {key: last or 0 for key, last in await connection.execute(query)}
        if scheme is not None and not start:
            raise unpublished(scheme, tenant)
        return start

    async def _after(self, tenant: str, scheme: str, last: int) -> list[TransitionRow]:
        async with tenant_transaction(self.engine, tenant) as connection:
            rows = await connection.execute(
                transitions_select()
                .where(
                    transitions.c.tenant_id == tenant,
                    transitions.c.scheme_key == scheme,
                    transitions.c.id > last,
                )
                .order_by(transitions.c.id)
            )
            return [transition_row(row) for row in rows]

    async def watch(self, tenant: str, scheme: str | None) -> AsyncGenerator[TransitionRow, None]:
        """Transitions of ``tenant`` (of ``scheme``, or all) committed from now on, in order;
        raises `NotFound` for an unpublished ``scheme``, FeedLost if the listening connection
        goes."""
        subscriber = _Subscriber(tenant, scheme)
        await self._listen()
        self._subscribers.add(subscriber)
        try:
            # Read after LISTEN: whatever commits from here on is both heard and after `last`.
            last = await self._start(tenant, scheme)
            self.active += 1
            try:
                while True:
                    due = {await subscriber.heard.get()}
                    while not subscriber.heard.empty():
                        due.add(subscriber.heard.get_nowait())
                    if None in due:
                        raise FeedLost("lost the database connection that hears tier changes")
                    for key in sorted(k for k in due if k is not None):
                        for row in await self._after(tenant, key, last.get(key, 0)):
                            last[key] = row.id
                            yield row
            finally:
                self.active -= 1
        finally:
            self._subscribers.discard(subscriber)

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
