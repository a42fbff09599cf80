"""Bring a database's schema to a revision with the project's alembic migrations.

Every command checks that its database is at this code's revision first (`current_revision`
against `head_revision`); those two read the database and the migration files without alembic,
whose import was a sixth of such a command's start-up."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from service.db import locks

if TYPE_CHECKING:
    from alembic.config import Config

_VERSIONS = Path(migrations.__file__).parent / "versions"
_REVISION = re.compile(r'^(revision|down_revision)(?:: [^=]+)? = (?:"(\w+)"|None)$', re.MULTILINE)


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def head_revision() -> str | None:
    """The newest migration's revision: the one no other migration revises (alembic's head:
    tests/db/test_migrate.py compares the two); None without migrations."""
    revises: dict[str, str | None] = {}
    for path in _VERSIONS.glob("*.py"):
        found = {name: value or None for name, value in _REVISION.findall(path.read_text())}
        if "revision" in found and found["revision"] is not None:
            revises[found["revision"]] = found.get("down_revision")
    heads = set(revises) - set(revises.values())
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have more than one head: {sorted(heads)}")
    return heads.pop() if heads else None


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate up to ``revision``; replicas starting together take turns (advisory lock)."""
    from alembic import command

    await _run(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command

    await _run(engine, lambda config: command.downgrade(config, revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision, from alembic's table; None before the first migration."""
    async with engine.connect() as connection:
        if await connection.scalar(text("SELECT to_regclass('alembic_version')")) is None:
            return None
        revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        return None if revision is None else str(revision)


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
