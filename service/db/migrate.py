"""Bring a database's schema to a revision with the project's alembic migrations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from service.db import locks


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate up to ``revision``; replicas starting together take turns (advisory lock)."""
    await _run(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, lambda config: command.downgrade(config, revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def _run(engine: AsyncEngine, action: Callable[[Config], None]) -> None:
    def run(connection: Connection) -> None:
        # A migration rewrites whole tables and may wait for another replica's: no time
        # bound (the engine's session default is an API request's).
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        locks.acquire_sync(connection, locks.Purpose.migrate)
        config = _config()
        config.attributes["connection"] = connection
        action(config)

    async with engine.begin() as connection:
        await connection.run_sync(run)
