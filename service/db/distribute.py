"""Distributing the schema by tenant on a Citus cluster (`tierwise distribute`).

Every tenant's rows live together on one node: `tenants` is distributed by its ``id`` and every
table with a ``tenant_id`` by that column, all co-located (same shards for the same tenant), so
the foreign key from ``customers`` to ``tenants`` holds on each shard and a tenant's statements
are routed to one node. Tables without ``tenant_id`` (`deployment_keys`) become reference tables;
``alembic_version`` stays on the coordinator.

Why not `tenants` as a reference table (what the docs once said): Citus then turns
``customers``, which references it, into a Citus-local table, which cannot be distributed or
co-located afterwards.

The steps are idempotent (a table already distributed is left alone), so the command runs after
every `tierwise migrate` to distribute the tables a new migration added; `tierwise migrate`
runs it itself on a database it finds distributed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.database import APP_ROLE, is_citus
from service.db.tables import metadata
from service.errors import UserError

# The table every other is co-located with, and its distribution column.
ANCHOR = ("tenants", "id")
TENANT_COLUMN = "tenant_id"
# Stays a local table of the coordinator (alembic's bookkeeping, read only by migrations).
LOCAL = frozenset({"alembic_version"})
# Tables with triggers: Citus distributes them only when told that their triggers are safe
# (they are created on every shard, and fire there).
WITH_TRIGGERS = frozenset({"audit_log"})

# Settings of every session on the coordinator (ALTER DATABASE): asyncpg's type introspection
# of each new connection took 0.5-0.7 s while Citus filtered shards out of pg_class.
DATABASE_SETTINGS = {"citus.override_table_visibility": "off"}


def distributed_tables() -> list[tuple[str, str]]:
    """(table, distribution column) in the order to distribute them: the anchor first."""
    ordered = [ANCHOR]
    for name, table in sorted(metadata.tables.items()):
        if name != ANCHOR[0] and TENANT_COLUMN in table.c:
            ordered.append((name, TENANT_COLUMN))
    return ordered


def reference_tables() -> list[str]:
    """Tables without a tenant: copied to every node."""
    return sorted(
        name
        for name, table in metadata.tables.items()
        if name != ANCHOR[0] and TENANT_COLUMN not in table.c and name not in LOCAL
    )


@dataclass
class Distribution:
    """What `distribute` did: the tables it distributed now, and those that already were."""

    distributed: list[str] = field(default_factory=list)
    referenced: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


_PARTITIONED = text(
    "SELECT logicalrelid::regclass::text, partmethod::text FROM pg_dist_partition "
    "WHERE logicalrelid::regclass::text = ANY(:tables)"
)


async def is_distributed(connection: AsyncConnection) -> bool:
    """Whether this database is a Citus coordinator whose `tenants` table is distributed."""
    if not await is_citus(connection):
        return False
    found = await connection.scalar(
        text("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'tenants'::regclass")
    )
    return bool(found)


async def distribute(engine: AsyncEngine, *, shard_count: int | None = None) -> Distribution:
    """Distribute every table that is not yet (see the module docstring). Raises UserError on
    a database without the citus extension, or one not migrated."""
    async with engine.connect() as connection:
        if not await is_citus(connection):
            raise UserError(
                "this database is not a Citus coordinator (the citus extension is not "
                "installed in it): `CREATE EXTENSION citus` there first, then add the workers "
                "(docs/operations.md, Distributing by tenant on Citus)"
            )
        missing = await connection.scalar(
            text("SELECT to_regclass('tenants') IS NULL OR to_regclass('alembic_version') IS NULL")
        )
        await connection.rollback()
    if missing:
        raise UserError("the database has no Tierwise schema yet: run `tierwise migrate` first")
    done = Distribution()
    async with engine.connect() as connection:
        # Each step commits on its own: Citus creates shards over parallel connections, which
        # later DDL in the same transaction could not see.
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.run_sync(_distribute, done, shard_count)
    return done


def _distribute(connection: Connection, done: Distribution, shard_count: int | None) -> None:
    run = connection.exec_driver_sql
    run("SET statement_timeout = 0")
    # Citus opens the app role's own connections to the workers (SET ROLE is kept there), so it
    # must be allowed to log in; it still has no password of its own (see docs/operations.md).
    run(f"ALTER ROLE {APP_ROLE} LOGIN")
    database = connection.scalar(text("SELECT current_database()"))
    for name, value in DATABASE_SETTINGS.items():
        run(f"ALTER DATABASE \"{database}\" SET {name} = '{value}'")
    tables = [name for name, _ in distributed_tables()] + reference_tables()
    kinds: dict[str, str] = dict(connection.execute(_PARTITIONED, {"tables": tables}).all())
    if shard_count is not None:
        run(f"SET citus.shard_count = {int(shard_count)}")
    for name, column in distributed_tables():
        if name in kinds:
            done.already.append(name)
            continue
        if name in WITH_TRIGGERS:
            run("SET citus.enable_unsafe_triggers = on")
        # The anchor starts its own co-location group; every other table joins it.
        colocate = "none" if name == ANCHOR[0] else ANCHOR[0]
        connection.execute(
            text("SELECT create_distributed_table(CAST(:t AS regclass), :c, colocate_with => :w)"),
            {"t": name, "c": column, "w": colocate},
        )
        if name in WITH_TRIGGERS:
            run("RESET citus.enable_unsafe_triggers")
        done.distributed.append(name)
    for name in reference_tables():
        if name in kinds:
            done.already.append(name)
            continue
        connection.execute(text("SELECT create_reference_table(CAST(:t AS regclass))"), {"t": name})
        done.referenced.append(name)
