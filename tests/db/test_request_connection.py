"""A request's shared read connection (`RequestConnection`): one pooled connection, confined
to the tenant once, its users taking turns; given back with nothing of the tenant on it after
a normal end, a failed statement, a cancelled one, or when other work of the request needs a
place. Pools of one connection, so the next user is certainly on the same one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.database import (
    APP_ROLE,
    TENANT_SETTING,
    DatabaseLimits,
    RequestConnection,
    create_engine,
    request_scope,
    tenant_transaction,
)
from service.errors import TimedOut

WHO = text(f"SELECT current_user, current_setting('{TENANT_SETTING}', true)")


@pytest.fixture
async def one(database: URL) -> AsyncIterator[AsyncEngine]:
    """A pool of exactly one connection."""
    engine = create_engine(
        database, pool_size=1, max_overflow=0, limits=DatabaseLimits(statement_timeout=0.5)
    )
    yield engine
    await engine.dispose()


async def _session(engine: AsyncEngine) -> tuple[str, str | None, int]:
    """The pooled connection as the next user finds it, outside any tenant transaction: its
    role, its tenant setting, and its backend's pid."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    f"SELECT current_user, nullif(current_setting('{TENANT_SETTING}', true), ''),"
                    " pg_backend_pid()"
                )
            )
        ).one()
        await connection.rollback()
    return row[0], row[1], row[2]


async def test_tenants_interleaved_on_one_connection_each_see_their_own(
    one: AsyncEngine,
) -> None:
    login, setting, pid = await _session(one)
    assert setting is None and login != APP_ROLE
    for tenant in ("t_a", "t_b", "t_a", "t_c"):
        shared = RequestConnection(one, tenant, shared=True)
        for _ in range(3):  # the tenant is set once, at checkout, and holds for every turn
            async with shared.turn() as connection:
                assert tuple(await connection.execute(WHO)) == ((APP_ROLE, tenant),)
        await shared.close()
        assert await _session(one) == (login, None, pid)  # the same connection, reset


async def test_turns_never_overlap(one: AsyncEngine) -> None:
    shared = RequestConnection(one, "t_a", shared=True)
    inside = 0
    most = 0

    async def use() -> None:
        nonlocal inside, most
        async with shared.turn() as connection:
            inside += 1
            most = max(most, inside)
            await connection.execute(text("SELECT pg_sleep(0.01)"))
            inside -= 1

    await asyncio.gather(*(use() for _ in range(10)))
    await shared.close()
    assert most == 1
    with pytest.raises(RuntimeError, match="request has ended"):
        async with shared.turn():
            pass


async def test_a_failed_statement_gives_the_connection_back_and_the_next_turn_starts_anew(
    one: AsyncEngine,
) -> None:
    login, _, pid = await _session(one)
    shared = RequestConnection(one, "t_a", shared=True)
    with pytest.raises(DBAPIError):
        async with shared.turn() as connection:
            await connection.execute(text("SELECT 1 / 0"))
    assert not shared.held
    assert await _session(one) == (login, None, pid)
    async with shared.turn() as connection:  # a fresh transaction, the tenant set again
        assert tuple(await connection.execute(WHO)) == ((APP_ROLE, "t_a"),)
    with pytest.raises(TimedOut, match="TIERWISE_STATEMENT_TIMEOUT"):
        async with shared.turn() as connection:
            await connection.execute(text("SELECT pg_sleep(5)"))
    await shared.close()
    async with tenant_transaction(one, "t_b") as connection:
        assert tuple(await connection.execute(WHO)) == ((APP_ROLE, "t_b"),)


async def test_a_cancelled_turn_leaves_nothing_of_its_tenant_on_the_pool(
    one: AsyncEngine,
) -> None:
    for delay in (0.0, 0.001, 0.01, 0.05):  # before checkout, in it, during the statement
        shared = RequestConnection(one, "t_a", shared=True)
        started = asyncio.Event()

        async def sleep(shared: RequestConnection = shared, started: asyncio.Event = started):
            async with shared.turn() as connection:
                started.set()
                await connection.execute(text("SELECT pg_sleep(5)"))

        task = asyncio.create_task(sleep())
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await shared.close()
        assert one.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        login, setting, _ = await _session(one)
        assert setting is None and login != APP_ROLE
        async with tenant_transaction(one, "t_b") as connection:
            assert tuple(await connection.execute(WHO)) == ((APP_ROLE, "t_b"),)


async def test_other_work_of_the_request_does_not_wait_for_the_idle_shared_connection(
    database: URL,
) -> None:
    """One connection per request and per tenant: the request's own transaction gets it
    from the idle shared connection instead of waiting for the end of the request."""
    engine = create_engine(
        database,
        pool_size=2,
        max_overflow=0,
        limits=DatabaseLimits(statement_timeout=5, tenant_connections=1, request_connections=1),
    )
    try:
        with request_scope(1):
            shared = RequestConnection(engine, "t_a", shared=True)
            async with shared.turn() as connection:
                await connection.execute(text("SELECT 1"))
            assert shared.held
            async with asyncio.timeout(2), tenant_transaction(engine, "t_a") as connection:
                assert tuple(await connection.execute(WHO)) == ((APP_ROLE, "t_a"),)
            async with shared.turn() as connection:  # taken again when needed
                assert tuple(await connection.execute(WHO)) == ((APP_ROLE, "t_a"),)
            await shared.close()
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_a_connection_whose_transaction_cannot_end_is_discarded(
    one: AsyncEngine, database: URL
) -> None:
    """The shared connection's transaction is asyncpg's own (the pool does not reset what it
    did not begin): when its COMMIT fails, here because its backend was terminated, the
    connection is closed and dropped from the pool, and the next user gets a new one, clean."""
    _, _, pid = await _session(one)
    shared = RequestConnection(one, "t_a", shared=True)
    async with shared.turn() as connection:
        assert tuple(await connection.execute(WHO)) == ((APP_ROLE, "t_a"),)
    other = create_engine(database, pool_size=1)
    try:
        async with other.connect() as killer:
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()
    # The driver may have seen the connection close already (nothing to end: it raises
    # nothing), or find out at COMMIT (raised, as whichever error the protocol is in the
    # state to give: the request's adapter logs it).
    with contextlib.suppress(
        asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.ConnectionDoesNotExistError
    ):
        await shared.close()
    assert one.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    login, setting, new_pid = await _session(one)
    assert new_pid != pid and setting is None and login != APP_ROLE
