"""The Subscription root: live tier changes.

Evaluation announces committed transitions with ``pg_notify`` (on any replica); each
subscription LISTENs on a dedicated asyncpg connection (not one of the pool's, which would be
held for as long as a client stays subscribed) and, on each announcement for its tenant, reads
the new transitions by id. Per scheme, runs and incremental updates are serialised by an
advisory lock held until commit, so ids commit in order and "id > last seen" misses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import asyncpg
import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.context import Info
from service.api.fields import subscription
from service.api.loaders import TransitionRow, transition_row, transitions_select
from service.api.types import Transition
from service.database import plain_url
from service.evaluation import TRANSITIONS_CHANNEL
from service.tables import transitions

# How a subscription's listening connection shows in pg_stat_activity.
LISTENER_NAME = "tierwise-tier-changed"


async def _last_ids(listener: Any, tenant: str) -> dict[str, int]:
    """The newest transition of each published scheme, where a subscription starts."""
    rows = await listener.fetch(
        "SELECT s.key, (SELECT max(t.id) FROM transitions t"
        " WHERE t.tenant_id = s.tenant_id AND t.scheme_key = s.key) AS last"
        " FROM schemes s WHERE s.tenant_id = $1",
        tenant,
    )
    return {row["key"]: row["last"] or 0 for row in rows}


async def _after(engine: AsyncEngine, tenant: str, scheme: str, last: int) -> list[TransitionRow]:
    async with engine.connect() as connection:
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


async def watch_transitions(
    engine: AsyncEngine, tenant: str, scheme: str | None
) -> AsyncIterator[TransitionRow]:
    """Transitions of ``tenant`` (of ``scheme``, or all) committed from now on, in order."""
    heard: asyncio.Queue[str] = asyncio.Queue()

    def on_notify(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message.get("tenant") == tenant and scheme in (None, message.get("scheme")):
            heard.put_nowait(str(message.get("scheme")))

    listener = await asyncpg.connect(
        plain_url(engine.url), server_settings={"application_name": LISTENER_NAME}
    )
    try:
        await listener.add_listener(TRANSITIONS_CHANNEL, on_notify)
        # Read after LISTEN: whatever commits from here on is both heard and after `last`.
        last = await _last_ids(listener, tenant)
        while True:
            due = {await heard.get()}
            while not heard.empty():
                due.add(heard.get_nowait())
            for key in sorted(due):
                for row in await _after(engine, tenant, key, last.get(key, 0)):
                    last[key] = row.id
                    yield row
    finally:
        await listener.close()


@strawberry.type(description="Live updates, over the graphql-transport-ws protocol.")
class Subscription:
    @subscription(
        "Every tier change from now on (of `scheme`, or of every scheme), as it commits: "
        "from ingest, evaluations and publishing, on any replica."
    )
    async def tier_changed(
        self, info: Info, scheme: str | None = None
    ) -> AsyncGenerator[Transition, None]:
        async for row in watch_transitions(info.context.engine, info.context.tenant, scheme):
            yield Transition.of(row)
