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

# Apps the tests make run no scheduled evaluations (they would evaluate other tests' schemes)
# unless a test asks for them; the default of a real deployment is a day.
os.environ.setdefault("TIERWISE_EVALUATION_INTERVAL", "0")
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import load_settings
from service.data import ingest
from service.db.database import create_engine, database_url
from service.db.tables import tenants
from tests.support import admin, create_and_migrate


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """The Postgres server the tests use (any database on it)."""
    with database_url(load_settings()) as url:
        yield url


@pytest.fixture(scope="session")
def database(server_url: URL) -> Iterator[URL]:
    """A fresh, migrated database for this test run."""
    url = server_url.set(database=f"tierwise_test_{os.getpid()}_{secrets.token_hex(3)}")
    asyncio.run(create_and_migrate(url))
    yield url
    asyncio.run(admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))


@pytest.fixture
async def engine(database: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database, pool_size=5, max_overflow=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def tenant(engine: AsyncEngine) -> str:
    """A tenant of its own for one test, so tests sharing the database never see each other."""
    tenant_id = f"t_{secrets.token_hex(6)}"
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=tenant_id, name=tenant_id))
    return tenant_id


@pytest.fixture(autouse=True)
def small_files_take_the_copy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' files are small, and most are written to exercise the COPY path (cast in
    SQL) and its fallback; in use, files under `ingest.BULK_MIN_BYTES` take the row path
    (tests/data/test_ingest.py checks that default with the real threshold)."""
    monkeypatch.setattr(ingest, "BULK_MIN_BYTES", 0)
