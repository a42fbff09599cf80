"""Alembic environment: runs on the connection `service.db.migrate` hands over, or, when alembic is
run directly, on the database the service itself would use."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from service.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    from service.config import load_settings
    from service.db.database import create_engine, database_url

    with database_url(load_settings()) as url:
        engine = create_engine(url, pool_size=1)
        async with engine.connect() as connection:
            # Migrations rewrite whole tables: no time bound (the engine's default is an API
            # request's).
            await connection.exec_driver_sql("SET statement_timeout = 0")
            await connection.run_sync(_run)
            await connection.commit()
        await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_standalone())
