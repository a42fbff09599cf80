"""What `tierwise distribute` covers, checked on a plain Postgres (the Citus run itself is in
tests/db/test_citus.py): every table of the schema is distributed by tenant, a reference table,
or deliberately local, so a new migration's table cannot be forgotten."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import distribute
from service.db.database import is_citus
from service.db.tables import metadata
from service.errors import UserError
from tests.support import tierwise


async def test_every_table_of_the_database_is_covered(engine: AsyncEngine) -> None:
    def table_names(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with engine.connect() as connection:
        present = await connection.run_sync(table_names)
    distributed = {name for name, _ in distribute.distributed_tables()}
    covered = distributed | set(distribute.reference_tables()) | distribute.LOCAL
    assert present - covered == set()
    assert present - distribute.LOCAL <= set(metadata.tables)


def test_tenant_tables_are_distributed_by_tenant_after_their_anchor() -> None:
    ordered = distribute.distributed_tables()
    assert ordered[0] == ("tenants", "id")
    for name, column in ordered[1:]:
        assert column == "tenant_id"
        assert "tenant_id" in metadata.tables[name].c
    names = {name for name, _ in ordered}
    assert {"customers", "orders", "events", "memberships", "transitions", "audit_log"} <= names
    assert distribute.reference_tables() == ["deployment_keys"]  # the id key, one for all


async def test_refused_without_citus(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert not await is_citus(connection)
        assert not await distribute.is_distributed(connection)
    with pytest.raises(UserError, match="not a Citus coordinator"):
        await distribute.distribute(engine)


def test_the_command_refuses_a_plain_postgres(database: URL) -> None:
    refused = tierwise(database, "distribute")
    assert refused.returncode == 1
    assert "not a Citus coordinator" in refused.stderr
