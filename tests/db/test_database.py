from __future__ import annotations

import secrets

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.database import async_url, create_engine, plain_url
from service.engine import evaluation
from service.errors import UserError
from tests.support import VALUE, admin, create_and_migrate, load, order, publish


def test_plain_urls_get_the_asyncpg_driver() -> None:
    url = async_url("postgresql://app:secret@db.internal:6432/tierwise")
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "db.internal",
        6432,
        "tierwise",
    )
    assert plain_url(url) == "postgresql://app:secret@db.internal:6432/tierwise"


def test_the_unix_socket_form_keeps_its_directory() -> None:
    url = async_url("postgresql://postgres@/tierwise?host=/var/run/postgresql")
    assert url.host is None and url.query == {"host": "/var/run/postgresql"}
    assert url.database == "tierwise"


def test_tls_mode_is_spelled_for_each_driver_entry() -> None:
    url = async_url("postgresql://app@db.internal/tierwise?sslmode=verify-full")
    assert url.query == {"ssl": "verify-full"}  # what asyncpg.connect() takes
    assert plain_url(url) == "postgresql://app@db.internal/tierwise?sslmode=verify-full"


async def test_one_url_with_sslmode_serves_the_pool_and_a_listener(server_url: URL) -> None:
    plain = plain_url(server_url.set(query={**server_url.query, "sslmode": "disable"}))
    engine = create_engine(async_url(plain), pool_size=1, max_overflow=1)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
        listener = await asyncpg.connect(plain_url(engine.url))
        assert await listener.fetchval("SELECT 1") == 1
        await listener.close()
    finally:
        await engine.dispose()


def test_the_postgres_scheme_alias_is_accepted() -> None:
    assert async_url("postgres://u@h/d").drivername == "postgresql+asyncpg"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://root@localhost/x", "must start with postgresql://, not mysql://"),
        ("not a url", "is not a database URL"),
    ],
)
def test_other_urls_are_refused_with_a_reason(value: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        async_url(value)


async def test_without_pre_ping_a_dead_connection_fails_once_then_is_replaced(
    database: URL,
) -> None:
    engine = create_engine(database, pool_size=1, max_overflow=1)
    try:
        async with engine.connect() as connection:
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        admin = create_engine(database, pool_size=1, max_overflow=1)
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await admin.dispose()
        with pytest.raises(DBAPIError) as failed:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert failed.value.connection_invalidated
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()


async def _estimated_rows(engine: AsyncEngine, table: str) -> float:
    async with engine.connect() as connection:
        estimate = await connection.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
        )
    return float(estimate)


async def test_loads_and_runs_gather_statistics_that_are_missing(server_url: URL) -> None:
    """With autovacuum off (as on this project's CI server) or late, a new tenant's tables had
    no planner statistics: Postgres took them for a handful of rows, nested its loops, and a
    `where` over 400 customers took 45 s. A load or run that leaves statistics stale by
    autovacuum's own rule gathers them in its transaction."""
    url = server_url.set(database=f"tierwise_statistics_{secrets.token_hex(3)}")
    await create_and_migrate(url)
    engine = create_engine(url, pool_size=2, max_overflow=2)
    try:
        assert await _estimated_rows(engine, "orders") < 0  # never analyzed
        rows = [order(f"o{n}", f"c{n % 100}", n % 300, "10") for n in range(400)]
        await load(engine, "shop", rows)
        assert await _estimated_rows(engine, "orders") == 400
        assert await _estimated_rows(engine, "customers") == 100
        await publish(engine, "shop", VALUE)
        assert await _estimated_rows(engine, "memberships") < 0
        await evaluation.evaluate(engine, "shop", "value")
        assert await _estimated_rows(engine, "memberships") == 100
    finally:
        await engine.dispose()
        await admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
