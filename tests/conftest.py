"""Test database: the server named by TIERWISE_DATABASE_URL, or the embedded Postgres.

Each test run creates its own fresh database on that server (and drops it afterwards), so runs
never see each other's data; each test gets its own tenant inside it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service import migrate
from service.config import load_settings
from service.database import create_engine, database_url
from service.tables import tenants


async def _admin(server: URL, statement: str) -> None:
    engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def _create_and_migrate(url: URL) -> None:
    await _admin(url, f'CREATE DATABASE "{url.database}"')
    engine = create_engine(url, pool_size=1)
    await migrate.upgrade(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """The Postgres server the tests use (any database on it)."""
    with database_url(load_settings()) as url:
        yield url


@pytest.fixture(scope="session")
def database(server_url: URL) -> Iterator[URL]:
    """A fresh, migrated database for this test run."""
    url = server_url.set(database=f"tierwise_test_{os.getpid()}_{secrets.token_hex(3)}")
    asyncio.run(_create_and_migrate(url))
    yield url
    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))


@pytest.fixture
async def engine(database: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def tenant(engine: AsyncEngine) -> str:
    """A tenant of its own for one test, so tests sharing the database never see each other."""
    tenant_id = f"t_{secrets.token_hex(6)}"
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=tenant_id, name=tenant_id))
    return tenant_id
