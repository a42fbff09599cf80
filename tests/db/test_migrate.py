from __future__ import annotations

import importlib
import secrets

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import migrate
from service.db.database import create_engine
from service.db.tables import metadata
from tests.support import admin


async def test_database_is_at_head(engine: AsyncEngine) -> None:
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_revisions_read_without_alembic_are_alembics(engine: AsyncEngine) -> None:
    """The command's schema check reads both revisions without alembic (start-up): the same
    as alembic reads them."""
    script = ScriptDirectory.from_config(migrate._config())
    assert migrate.head_revision() == script.get_current_head() is not None

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        assert await migrate.current_revision(engine) == await connection.run_sync(read)


async def test_migrations_match_the_table_definitions(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_upgrade_and_downgrade_round_trip(server_url: URL) -> None:
    url = server_url.set(database=f"tierwise_migrate_{secrets.token_hex(4)}")
    await admin(url, f'CREATE DATABASE "{url.database}"')
    engine = create_engine(url, pool_size=1, max_overflow=1)
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


async def test_existing_transitions_are_numbered_per_tenant_and_scheme(server_url: URL) -> None:
    """Migration 0008 numbers the transitions recorded before it in id order, per tenant and
    scheme, and the counters continue from there."""
    numbering = importlib.import_module("migrations.versions.0008_transition_numbers")
    url = server_url.set(database=f"tierwise_migrate_{secrets.token_hex(4)}")
    await admin(url, f'CREATE DATABASE "{url.database}"')
    engine = create_engine(url, pool_size=1, max_overflow=1)
    try:
        await migrate.upgrade(engine, numbering.down_revision)
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO tenants VALUES ('a', 'a'), ('b', 'b')"))
            await connection.execute(
                text(
                    "INSERT INTO customers (tenant_id, external_id) VALUES ('a', 'c1'), ('b', 'c1')"
                )
            )
            for tenant, scheme in [("a", "v"), ("b", "v"), ("a", "v"), ("a", "w"), ("b", "v")]:
                await connection.execute(
                    text(
                        "INSERT INTO transitions (tenant_id, scheme_key, customer_id, to_tier, at, "
                        "version, trigger) SELECT tenant_id, :k, id, 'T', now(), 1, 'test' "
                        "FROM customers WHERE tenant_id = :t"
                    ),
                    {"t": tenant, "k": scheme},
                )
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            numbered = (
                await connection.execute(
                    text("SELECT tenant_id, scheme_key, number FROM transitions ORDER BY id")
                )
            ).all()
            counters = (
                await connection.execute(
                    text("SELECT tenant_id, scheme_key, last_number FROM transition_counters")
                )
            ).all()
        assert [tuple(row) for row in numbered] == [
            ("a", "v", 1),
            ("b", "v", 1),
            ("a", "v", 2),
            ("a", "w", 1),
            ("b", "v", 2),
        ]
        assert sorted(tuple(row) for row in counters) == [
            ("a", "v", 2),
            ("a", "w", 1),
            ("b", "v", 2),
        ]
    finally:
        await engine.dispose()
        await admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


async def test_no_identity_columns(engine: AsyncEngine) -> None:
    """Ids come from sequences (migration 0011): Citus cannot change the shard count of a
    table with an identity column."""
    async with engine.connect() as connection:
        identity = await connection.scalars(
            text(
                "SELECT table_name || '.' || column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND is_identity = 'YES'"
            )
        )
        assert list(identity) == []


async def test_ids_continue_after_existing_ones(server_url: URL) -> None:
    """Rows inserted before migration 0011 keep their ids and new rows get higher ones."""
    url = server_url.set(database=f"tierwise_migrate_{secrets.token_hex(4)}")
    await admin(url, f'CREATE DATABASE "{url.database}"')
    engine = create_engine(url, pool_size=1)
    try:
        sequences = importlib.import_module("migrations.versions.0011_citus")
        await migrate.upgrade(engine, sequences.down_revision)
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO tenants VALUES ('a', 'a')"))
            await connection.execute(
                text(
                    "INSERT INTO customers (tenant_id, external_id) VALUES ('a', 'c1'), ('a', 'c2')"
                )
            )
        await migrate.upgrade(engine)
        async with engine.begin() as connection:
            new = await connection.scalar(
                text(
                    "INSERT INTO customers (tenant_id, external_id) VALUES ('a', 'c3') RETURNING id"
                )
            )
            old = await connection.scalar(
                text("SELECT max(id) FROM customers WHERE external_id < 'c3'")
            )
        assert old == 2 and new == 3
    finally:
        await engine.dispose()
        await admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
