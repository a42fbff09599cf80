from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from service.db.database import async_url, create_engine, plain_url
from service.errors import UserError


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
    engine = create_engine(async_url(plain), pool_size=1)
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
    engine = create_engine(database, pool_size=1)
    try:
        async with engine.connect() as connection:
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        admin = create_engine(database, pool_size=1)
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
