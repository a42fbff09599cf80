from __future__ import annotations

import secrets

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import migrate
from service.db.database import create_engine
from service.db.tables import metadata
from tests.support import admin


async def test_database_is_at_head(engine: AsyncEngine) -> None:
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_migrations_match_the_table_definitions(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_upgrade_and_downgrade_round_trip(server_url: URL) -> None:
    url = server_url.set(database=f"tierwise_migrate_{secrets.token_hex(4)}")
    await admin(url, f'CREATE DATABASE "{url.database}"')
    engine = create_engine(url, pool_size=1)
    try:

        def table_names(connection: Connection) -> set[str]:
            return set(inspect(connection).get_table_names())

        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            assert set(metadata.tables) <= await connection.run_sync(table_names)
        await migrate.downgrade(engine, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(table_names) == {"alembic_version"}
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()
        await admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
