"""A one-order import with its tiers' refresh: how many statements it sends (each a round trip
to the database), and the temporary tables it keeps per connection never carry one
transaction's rows into the next, committed, rolled back or another tenant's."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data.ingest import import_rows
from service.data.readers import IngestError
from service.data.records import Kind
from service.db.database import create_engine, tenant_transaction
from service.engine import evaluation
from tests.support import VALUE, load, moves, order, publish, tiers_of

# Statements of one order with the refresh of one scheme whose tier it changes, transaction
# control included (bench_engine.py measures the same on 1M customers). Before the temporary
# tables were kept per connection and the steps batched: 26.
MOST = 14

KEPT = ("stage_orders", "affected_customers", "load_rates", "new_tiers")


async def statements_of_one_order(engine: AsyncEngine, tenant: str, row: dict[str, str]) -> int:
    """The statements (round trips) one single-order import with its refresh sends: those
    SQLAlchemy executes and those run by asyncpg directly, transaction control included."""
    seen: list[str] = []
    logged: dict[int, Any] = {}

    def count(*args: object) -> None:
        seen.append(str(args[2]))

    def direct(record: Any) -> None:
        seen.append(record.query)  # transaction control and what ingest sends itself

    def checkout(dbapi_connection: Any, *_: object) -> None:
        driver = dbapi_connection.driver_connection
        if id(driver) not in logged:
            logged[id(driver)] = driver
            driver.add_query_logger(direct)

    copy = asyncpg.Connection.copy_records_to_table

    async def copied(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> str:
        seen.append("COPY")  # asyncpg's query logger does not see COPY
        return await copy(self, *args, **kwargs)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    event.listen(engine.sync_engine.pool, "checkout", checkout)
    asyncpg.Connection.copy_records_to_table = copied  # type: ignore[method-assign]
    try:
        await load(engine, tenant, [row], after_load=evaluation.refresh_affected)
    finally:
        asyncpg.Connection.copy_records_to_table = copy  # type: ignore[method-assign]
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        event.remove(engine.sync_engine.pool, "checkout", checkout)
        for driver in logged.values():
            driver.remove_query_logger(direct)
    return len(seen)


@pytest.fixture
async def one_connection(database: URL) -> AsyncIterator[AsyncEngine]:
    """An engine keeping one connection: each load finds the tables of the one before."""
    engine = create_engine(database, pool_size=1, max_overflow=2)  # a run takes two
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_one_order_with_its_tier_change_takes_few_round_trips(
    one_connection: AsyncEngine, tenant: str
) -> None:
    engine = one_connection  # the load before was on the same connection, as in a warm pool
    await load(engine, tenant, [order("o1", "a", 200, "100"), order("o2", "b", 200, "100")])
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    await load(engine, tenant, [order("o3", "a", 1, "10")], after_load=evaluation.refresh_affected)
    sent = await statements_of_one_order(engine, tenant, order("o4", "b", 1, "9000"))
    assert sent <= MOST
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"a": "Active", "b": "VIP"}
        assert (await moves(connection, tenant))[-2:] == [
            ("a", "Normal", "Active", "ingest", False),
            ("b", "Normal", "VIP", "ingest", False),
        ]


async def kept_rows(engine: AsyncEngine, tenant: str) -> dict[str, int]:
    """The rows of the kept temporary tables a new transaction of ``tenant`` finds."""
    found: dict[str, int] = {}
    async with tenant_transaction(engine, tenant) as connection:
        for name in KEPT:
            exists = await connection.scalar(text(f"SELECT to_regclass('pg_temp.{name}')"))
            if exists is not None:
                found[name] = int(await connection.scalar(text(f"SELECT count(*) FROM {name}")))
    return found


async def test_kept_tables_start_every_transaction_empty(
    one_connection: AsyncEngine,
) -> None:
    engine = one_connection
    first, second = (f"t{secrets.token_hex(4)}" for _ in range(2))
    await publish(engine, first, VALUE)
    await load(engine, first, [order("o1", "a", 1, "9000")], after_load=evaluation.refresh_affected)
    assert await kept_rows(engine, second) == dict.fromkeys(KEPT, 0)

    async def refresh_then_fail(connection: Any, tenant: str) -> None:
        await evaluation.refresh_affected(connection, tenant)
        raise RuntimeError("stopped after the refresh")

    with pytest.raises(RuntimeError):
        await load(engine, first, [order("o2", "b", 1, "9000")], after_load=refresh_then_fail)
    assert all(rows == 0 for rows in (await kept_rows(engine, second)).values())
    with pytest.raises(IngestError):
        await import_rows(
            engine,
            Kind.orders,
            first,
            enumerate([order("o3", "c", 1, "9000"), {"order_id": "o4"}], 2),
            source="test",
        )
    assert all(rows == 0 for rows in (await kept_rows(engine, second)).values())
    # The other tenant's load on the same connection touches only its own customer.
    await publish(engine, second, VALUE)
    await load(
        engine, second, [order("o1", "z", 1, "9000")], after_load=evaluation.refresh_affected
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, first, "value") == {"a": "Active"}
        assert await tiers_of(connection, second, "value") == {"z": "Active"}


async def test_a_load_after_a_failed_first_one_makes_the_tables_again(
    one_connection: AsyncEngine, tenant: str
) -> None:
    engine = one_connection
    await publish(engine, tenant, VALUE)
    with pytest.raises(IngestError):  # the tables it made are rolled back with it
        await import_rows(
            engine,
            Kind.orders,
            tenant,
            enumerate([order("o1", "a", 1, "9000"), {"order_id": "o2"}], 2),
            source="test",
            after_load=evaluation.refresh_affected,
        )
    await load(
        engine, tenant, [order("o3", "b", 1, "9000")], after_load=evaluation.refresh_affected
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"b": "Active"}
