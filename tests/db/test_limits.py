"""The bounds of tenant transactions: a statement timeout on every one (an API request's, or
batch work's longer one), a share of the pool per tenant and per request, and no statement
parameter in any error text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.database import (
    DatabaseLimits,
    create_engine,
    limits_of,
    request_scope,
    tenant_transaction,
)
from service.errors import TimedOut

LIMITS = DatabaseLimits(
    statement_timeout=0.5,
    batch_statement_timeout=20,
    idle_in_transaction_timeout=30,
    tenant_connections=2,
    request_connections=1,
)


@pytest.fixture
async def bounded(database: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database, pool_size=3, max_overflow=3, limits=LIMITS)
    yield engine
    await engine.dispose()


async def _setting(engine: AsyncEngine, tenant: str, name: str, *, batch: bool = False) -> str:
    async with tenant_transaction(engine, tenant, batch=batch) as connection:
        return str(await connection.scalar(text(f"SHOW {name}")))


async def test_every_tenant_transaction_has_its_statement_timeout(bounded: AsyncEngine) -> None:
    assert await _setting(bounded, "t_a", "statement_timeout") == "500ms"
    assert await _setting(bounded, "t_a", "statement_timeout", batch=True) == "20s"
    assert await _setting(bounded, "t_a", "idle_in_transaction_session_timeout") == "30s"
    # The login role's own sessions (system work outside tenant transactions) too.
    async with bounded.connect() as connection:
        assert await connection.scalar(text("SHOW statement_timeout")) == "500ms"
    assert limits_of(bounded) == LIMITS


async def test_a_statement_past_its_timeout_is_stopped_with_timed_out(
    bounded: AsyncEngine,
) -> None:
    """The probe's 600-alternative `where` ran 33 s with `statement_timeout` 0."""
    with pytest.raises(TimedOut, match=r"longer than 0\.5 s \(TIERWISE_STATEMENT_TIMEOUT\)"):
        async with tenant_transaction(bounded, "t_a") as connection:
            await connection.execute(text("SELECT pg_sleep(5)"))
    # Batch work (runs, imports) has the longer bound.
    async with tenant_transaction(bounded, "t_a", batch=True) as connection:
        await connection.execute(text("SELECT pg_sleep(0.7)"))


async def _hold(
    engine: AsyncEngine, tenant: str, entered: asyncio.Event, release: asyncio.Event
) -> None:
    async with tenant_transaction(engine, tenant):
        entered.set()
        await release.wait()


async def test_one_tenant_cannot_take_the_whole_pool(bounded: AsyncEngine) -> None:
    """Tenant a holds its two connections (of the pool's six); a third transaction of a
    waits in the process, holding none, while tenant b's transactions go ahead, and it gives
    up with TimedOut when the wait passes the statement timeout."""
    release = asyncio.Event()
    entered = [asyncio.Event() for _ in range(3)]
    holders = [asyncio.create_task(_hold(bounded, "t_a", e, release)) for e in entered]
    try:
        await asyncio.wait_for(asyncio.gather(entered[0].wait(), entered[1].wait()), 10)
        await asyncio.sleep(0.1)
        assert not entered[2].is_set()
        assert bounded.sync_engine.pool.checkedout() == 2  # type: ignore[attr-defined]
        assert await _setting(bounded, "t_b", "statement_timeout") == "500ms"
        with pytest.raises(TimedOut, match="TIERWISE_TENANT_CONNECTIONS"):
            await holders[2]
    finally:
        release.set()
        await asyncio.gather(*holders, return_exceptions=True)
    assert bounded.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_transaction_inside_another_of_the_same_task_takes_no_second_slot(
    database: URL,
) -> None:
    """An evaluation records its start on a second connection while holding the first: with
    one connection per tenant that must not wait for itself."""
    engine = create_engine(
        database, pool_size=2, max_overflow=2, limits=DatabaseLimits(tenant_connections=1)
    )
    try:
        async with (
            tenant_transaction(engine, "t_a") as outer,
            tenant_transaction(engine, "t_a") as inner,
        ):
            assert await outer.scalar(text("SELECT 1")) == await inner.scalar(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_a_request_holds_at_most_its_share_of_connections(bounded: AsyncEngine) -> None:
    """Inside a request's scope (one connection), its concurrent transactions take turns."""
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with tenant_transaction(bounded, "t_a"):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with tenant_transaction(bounded, "t_a", batch=True):
            order.append("second in")

    with request_scope(LIMITS.request_connections):
        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_in.wait()
    await asyncio.sleep(0.1)
    assert order == ["first in"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second in"]


async def test_statement_parameters_are_not_written_into_errors(engine: AsyncEngine) -> None:
    """SQLAlchemy formats a failed statement's parameters into its error's text unless told
    not to (what asyncpg and Postgres quote themselves is kept out of the logs by
    `service.logs`: tests/test_observability.py)."""
    secret = "whsec_do-not-log-this-secret"
    with pytest.raises(DBAPIError) as raised:
        async with engine.connect() as connection:
            await connection.execute(
                text("SELECT CAST(:secret AS text), 1 / 0"), {"secret": secret}
            )
    assert secret not in str(raised.value)
    assert "parameters hidden" in str(raised.value)
