"""The compatibility suite for Citus: the main flows against a Citus coordinator named by
TIERWISE_CITUS_URL (migrated, then distributed by `tierwise distribute`), each compared with the
same flow on the single Postgres the rest of the suite uses. Skipped without TIERWISE_CITUS_URL.

The Citus database is emptied of Tierwise's tables first: point the variable at a database
kept for this (docs/operations.md says how to start a local cluster).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.data import demo_data, rates, rollups
from service.data.ingest import import_file, import_rates, import_rows
from service.data.records import Kind
from service.db import distribute, migrate
from service.db.database import async_url, create_engine, is_citus, tenant_transaction
from service.db.tables import tenants
from service.engine import analytics, evaluation, scheduler, schemes, strategies, webhooks
from service.engine.predictions.tenant import fit_tenant
from service.engine.templates import TEMPLATES
from service.engine.webhooks import Dispatcher
from tests.api.support import data, post
from tests.engine.test_webhooks import FAST, RECENT, Receiver, serving
from tests.support import order, tierwise

CITUS_URL = os.environ.get("TIERWISE_CITUS_URL")

pytestmark = pytest.mark.skipif(
    not CITUS_URL, reason="needs a Citus cluster: set TIERWISE_CITUS_URL"
)

_RESET = """
DO $$
DECLARE r record;
BEGIN
    -- Not the shards a node holds (a reference table's, on the coordinator): Citus refuses
    -- to drop one directly, and each goes with its table.
    FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND NOT EXISTS (
        SELECT FROM pg_dist_shard s WHERE shard_name(s.logicalrelid, s.shardid) = tablename
    ) LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
    END LOOP;
END $$
"""


async def _prepare(url: URL) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(_RESET))
            await connection.execute(
                text(
                    "DROP FUNCTION IF EXISTS tierwise_analyze(text), "
                    "tierwise_audit_log_is_append_only()"
                )
            )
        await migrate.upgrade(engine)
        done = await distribute.distribute(engine)
        assert "customers" in done.distributed
        again = await distribute.distribute(engine)  # idempotent
        assert again.distributed == [] and "customers" in again.already
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def citus_database() -> Iterator[URL]:
    assert CITUS_URL
    url = async_url(CITUS_URL)
    asyncio.run(_prepare(url))
    yield url


@pytest.fixture
async def citus(citus_database: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(citus_database, pool_size=5)
    yield engine
    await engine.dispose()


async def _new_tenant(*engines: AsyncEngine) -> str:
    tenant = f"t_{secrets.token_hex(6)}"
    for engine in engines:
        async with engine.begin() as connection:
            await connection.execute(tenants.insert().values(id=tenant, name=tenant))
    return tenant


async def test_every_tenant_table_is_distributed_and_co_located(citus: AsyncEngine) -> None:
    async with citus.connect() as connection:
        assert await is_citus(connection)
        rows = await connection.execute(
            text(
                "SELECT logicalrelid::regclass::text, partmethod::text, colocationid, "
                "column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition"
            )
        )
        found = {name: (method, group, column) for name, method, group, column in rows}
        local = await connection.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        # A reference table keeps a placement (its shard, `<table>_<shard id>`) on the
        # coordinator too, which is in the cluster's metadata.
        shards = await connection.scalars(
            text("SELECT logicalrelid::regclass::text || '_' || shardid FROM pg_dist_shard")
        )
        tables = set(local) - set(shards)
    expected = dict(distribute.distributed_tables())
    hashed = {name: found[name] for name in found if found[name][0] == "h"}
    referenced = {name for name in found if found[name][0] == "n"}
    assert tables - set(found) == set(distribute.LOCAL)
    assert {name: column for name, (_, _, column) in hashed.items()} == expected
    assert referenced == set(distribute.reference_tables())  # deployment_keys
    assert set(found) == set(hashed) | referenced
    assert len({group for _, group, _ in hashed.values()}) == 1  # one co-location group


async def _load_and_evaluate(engine: AsyncEngine, tenant: str, folder: Path) -> None:
    """The demo's flow for one tenant: import, publish the four templates with their
    strategies, evaluate; then an incremental import (tiers follow) and a second run."""
    generated = demo_data.DemoConfig(customers=300, seed=11)
    await demo_data.set_up_tenant(engine, tenant, generated)
    for kind, rows, fields in (
        (Kind.customers, demo_data.customer_rows, demo_data.CUSTOMER_FIELDS),
        (Kind.orders, demo_data.order_rows, demo_data.ORDER_FIELDS),
        (Kind.events, demo_data.event_rows, demo_data.EVENT_FIELDS),
    ):
        path = folder / f"{kind}.csv"
        if not path.exists():
            demo_data.write_csv(rows(generated), path, fields)
        await import_file(engine, kind, tenant, path)
    actor = audit.command_line_actor()
    for template in TEMPLATES.values():
        async with tenant_transaction(engine, tenant) as connection:
            await schemes.publish(
                connection, tenant, template.source, file=template.file, actor=actor
            )
            await strategies.install_template(connection, tenant, template, actor=actor)
    await evaluation.evaluate_all(engine, tenant, trigger="test")
    more = [
        order("late-1", "C000001", 1, "9000"),
        order("late-2", "C000002", 2, "7500"),
        order("late-3", "NEW-1", 3, "120"),
        order("late-4", "C000003", 1, "-40"),
    ]
    await import_rows(engine, Kind.orders, tenant, enumerate(more), source="test")
    await evaluation.evaluate_all(engine, tenant, trigger="test")


async def _state(engine: AsyncEngine, tenant: str) -> dict[str, Any]:
    """What a user sees of the tenant, without ids and times that differ between servers."""
    async with tenant_transaction(engine, tenant) as connection:

        async def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted((tuple(row) for row in await connection.execute(text(sql))), key=repr)

        return {
            "memberships": await rows(
                "SELECT m.scheme_key, c.external_id, m.tier, m.version FROM memberships m "
                "JOIN customers c ON c.tenant_id = m.tenant_id AND c.id = m.customer_id"
            ),
            "transitions": await rows(
                "SELECT t.scheme_key, c.external_id, t.from_tier, t.to_tier, t.version, "
                "t.trigger FROM transitions t "
                "JOIN customers c ON c.tenant_id = t.tenant_id AND c.id = t.customer_id"
            ),
            "transition_numbers": await rows(
                "SELECT scheme_key, count(*), max(number) FROM transitions GROUP BY scheme_key"
            ),
            "rollups": await rows(
                "SELECT c.external_id, m.order_count, m.order_total, m.first_order_at, "
                "m.last_order_at FROM customer_metrics m "
                "JOIN customers c ON c.tenant_id = m.tenant_id AND c.id = m.customer_id"
            ),
            "runs": await rows(
                "SELECT scheme_key, status, customers, changed FROM evaluation_runs"
            ),
            "strategies": await rows("SELECT scheme_key, tier, name, channel FROM strategies"),
            "segments": await analytics.segment_report(connection, tenant, None),
        }


_READ = """
query {
  segments { scheme tier customerCount customerShare revenue revenueShare averageRevenue }
  schemes { key }
  normal: customers(scheme: "value", tier: "Normal", first: 10) {
    totalCount edges { node { id region tiers { scheme tier version } } }
  }
  big: customers(where: "monetary > 1000 and frequency >= 2", first: 5) {
    totalCount edges { node { id } }
  }
  customer(id: "C000001") { id tiers { scheme tier } }
  explain(customer: "C000002", scheme: "value") { tier }
}
"""

_WRITE = """
mutation {
  upsertCustomers(customers: [{id: "G-1", name: "Gia", region: "north"}]) {
    inserted updated rejected
  }
  recordOrders(orders: [
    {id: "g-o1", customerId: "G-1", orderedAt: "%s", amount: "6000"},
    {id: "g-o2", customerId: "G-1", orderedAt: "%s", amount: "800"}
  ]) { inserted customersCreated tierChanges }
}
"""


async def test_same_results_as_single_postgres(
    citus: AsyncEngine, engine: AsyncEngine, tmp_path: Path
) -> None:
    tenant = await _new_tenant(citus, engine)
    await _load_and_evaluate(engine, tenant, tmp_path)
    await _load_and_evaluate(citus, tenant, tmp_path)
    single = await _state(engine, tenant)
    distributed = await _state(citus, tenant)
    assert len(single["memberships"]) > 3 * 300
    assert single["transitions"] and single["rollups"] and single["segments"]
    for part in single:
        assert distributed[part] == single[part], part

    when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat()
    written = [data(await post(e, tenant, _WRITE % (when, when))) for e in (engine, citus)]
    assert written[0] == written[1]
    assert written[0]["recordOrders"]["inserted"] == 2
    read = [data(await post(e, tenant, _READ)) for e in (engine, citus)]
    assert read[0] == read[1]
    assert read[0]["normal"]["totalCount"] > 0

    now = dt.datetime.now(dt.UTC)
    predicted = [await _fit_predictions(e, tenant, now) for e in (engine, citus)]
    assert len(predicted[0]) > 250
    assert predicted[0] == predicted[1]


async def _fit_predictions(
    engine: AsyncEngine, tenant: str, as_of: dt.datetime
) -> list[tuple[Any, ...]]:
    """`tierwise predict fit`'s work (it ends with an ANALYZE, which Citus refused there):
    each customer's p_alive and CLV (6 significant digits: the fits are floats)."""
    async with tenant_transaction(engine, tenant) as connection:
        await fit_tenant(connection, tenant, as_of)
        found = await connection.execute(
            text(
                "SELECT c.external_id, p.p_alive, p.clv FROM customer_predictions p "
                "JOIN customers c ON c.tenant_id = p.tenant_id AND c.id = p.customer_id"
            )
        )
        return sorted(
            (name, f"{alive:.6g}", clv and [f"{value:.6g}" for value in clv])
            for name, alive, clv in found
        )


async def _convert(engine: AsyncEngine, tenant: str, folder: Path) -> dict[str, Any]:
    """Orders in other currencies: converted at import (the COPY path and the Python path),
    a refund named before its order, then a rate imported later converting stored orders."""
    await rates.set_reporting_currency(engine, tenant, "CNY")
    rate_file = folder / "rates.csv"
    rate_file.write_text("currency,date,rate\nUSD,2026-01-01,7.1\nUSD,2026-02-01,7.25\n")
    await import_rates(engine, tenant, rate_file)
    order_file = folder / "orders.csv"
    order_file.write_text(
        "order_id,customer_id,ordered_at,amount,currency,refund_of\n"
        "R,ANN,2026-02-03,-10,USD,A\n"  # a refund before the order it names
        "A,ANN,2026-01-31T23:59:59Z,100.01,USD,\n"
        "B,BEN,2026-02-01T00:30:00+01:00,100,USD,\n"  # 2026-01-31 in UTC
        "C,BEN,2026-02-02,99.99,,\n"  # no currency: the reporting currency
    )
    loaded = await import_file(engine, Kind.orders, tenant, order_file)
    assert loaded.bulk
    late = [
        {
            "order_id": "D",
            "customer_id": "CAT",
            "ordered_at": "2026-01-20",
            "amount": "3",
            "currency": "USD",
        }
    ]
    await import_rows(engine, Kind.orders, tenant, enumerate(late, 2), source="test")
    rate_file.write_text("currency,date,rate\nUSD,2026-01-15,7.0123\n")
    converted = (await import_rates(engine, tenant, rate_file)).converted
    async with tenant_transaction(engine, tenant) as connection:
        found = await connection.execute(
            text(
                "SELECT o.external_id, o.amount, o.original_amount, o.currency, m.order_total "
                "FROM orders o JOIN customer_metrics m "
                "ON m.tenant_id = o.tenant_id AND m.customer_id = o.customer_id"
            )
        )
        drift = await rollups.drift(connection, tenant)
    return {"converted": converted, "orders": sorted(found.all()), "drift": drift}


async def test_currencies_convert_as_on_single_postgres(
    citus: AsyncEngine, engine: AsyncEngine, tmp_path: Path
) -> None:
    tenant = await _new_tenant(citus, engine)
    single = await _convert(engine, tenant, tmp_path)
    assert await _convert(citus, tenant, tmp_path) == single
    # A, B and D: the rate of 2026-01-15 now applies (B is 2026-01-31 in UTC).
    assert single["converted"] == 3
    assert single["drift"] == 0
    assert single["orders"] == [  # amount, original amount, currency, the customer's total
        ("A", Decimal("701.3001"), Decimal("100.01"), "USD", Decimal("628.8001")),
        ("B", Decimal("701.23"), Decimal("100"), "USD", Decimal("801.22")),
        ("C", Decimal("99.99"), Decimal("99.99"), "CNY", Decimal("801.22")),
        ("D", Decimal("21.0369"), Decimal("3"), "USD", Decimal("21.0369")),
        ("R", Decimal("-72.5"), Decimal("-10"), "USD", Decimal("628.8001")),  # February's
    ]


async def test_tenants_are_isolated(citus: AsyncEngine) -> None:
    """The tenant set for a transaction reaches the workers: a tenant sees its own rows (not
    none, as when the setting stayed on the coordinator) and no other's, and cannot write
    another's."""
    mine, other = await _new_tenant(citus), await _new_tenant(citus)
    for tenant, customer in ((mine, "m1"), (other, "o1")):
        rows = [{"customer_id": customer, "name": customer}]
        await import_rows(citus, Kind.customers, tenant, enumerate(rows), source="test")
    async with tenant_transaction(citus, mine) as connection:
        seen = list(await connection.scalars(text("SELECT external_id FROM customers")))
        assert seen == ["m1"]
        assert await connection.scalar(text("SELECT count(*) FROM tenants")) == 1
    with pytest.raises(DBAPIError, match="row-level security"):
        async with tenant_transaction(citus, mine) as connection:
            await connection.execute(
                text("INSERT INTO customers (tenant_id, external_id) VALUES (:t, 'x')"),
                {"t": other},
            )


async def test_a_tenants_statements_run_on_one_shard(citus: AsyncEngine) -> None:
    tenant = await _new_tenant(citus)
    async with tenant_transaction(citus, tenant) as connection:
        plan = "\n".join(
            await connection.scalars(
                text(
                    "EXPLAIN SELECT m.tier, count(*) FROM memberships m JOIN customers c "
                    "ON c.tenant_id = m.tenant_id AND c.id = m.customer_id "
                    "WHERE m.tenant_id = :t GROUP BY m.tier"
                ),
                {"t": tenant},
            )
        )
    assert "Task Count: 1" in plan, plan


async def test_webhooks_are_delivered_exactly_once(citus: AsyncEngine) -> None:
    tenant = await _new_tenant(citus)
    async with serving(Receiver()) as receiver:
        async with tenant_transaction(citus, tenant) as connection:
            created = await webhooks.create(
                connection,
                tenant,
                audit.command_line_actor(),
                url=receiver.url,
                allow_http=True,
                allow_private=True,
            )
        receiver.secrets.append(created.secret)
        rows = [order(f"o{i}", f"c{i}", i * 20, "50") for i in range(1, 6)]
        await import_rows(citus, Kind.orders, tenant, enumerate(rows), source="test")
        async with tenant_transaction(citus, tenant) as connection:
            await schemes.publish(connection, tenant, RECENT)
        await evaluation.evaluate(citus, tenant, "recent")
        dispatcher = Dispatcher(citus, FAST)
        task = asyncio.create_task(dispatcher.run())
        try:
            deadline = time.monotonic() + 30
            while len(receiver.events) < 5:
                assert time.monotonic() < deadline, "deliveries did not arrive"
                await asyncio.sleep(0.05)
            await asyncio.sleep(FAST.lease_seconds * 2)  # past a lease: nothing comes again
        finally:
            dispatcher.stop()
            await task
        async with tenant_transaction(citus, tenant) as connection:
            found = await webhooks.deliveries(connection, tenant, limit=100)
    assert len(receiver.arrivals) == len(set(receiver.arrivals)) == 5
    assert {d.status for d in found} == {"delivered"}
    assert all(d.delivered_at is not None for d in found)


async def test_a_tenant_id_with_quotes_reaches_the_workers(citus: AsyncEngine) -> None:
    """On Citus the tenant is written into `SET LOCAL` as a literal: quoted, never spliced
    (ingest refuses such ids, but a transaction is confined whatever its tenant's id is)."""
    tenant = f"o'brien-{secrets.token_hex(3)}\\'; SET ROLE postgres; --"
    async with citus.begin() as connection:
        await connection.execute(tenants.insert().values(id=tenant, name="quotes"))
        await connection.execute(
            text("INSERT INTO customers (tenant_id, external_id) VALUES (:t, 'q1')"), {"t": tenant}
        )
    async with tenant_transaction(citus, tenant) as connection:
        assert list(await connection.scalars(text("SELECT external_id FROM customers"))) == ["q1"]
        assert await connection.scalar(text("SELECT current_user")) == "tierwise_app"


async def test_the_scheduler_finds_and_runs_due_schemes(citus: AsyncEngine) -> None:
    tenant = await _new_tenant(citus)
    rows = [order(f"o{i}", f"c{i}", i * 20, "50") for i in range(1, 4)]
    await import_rows(citus, Kind.orders, tenant, enumerate(rows), source="test")
    async with tenant_transaction(citus, tenant) as connection:
        await schemes.publish(connection, tenant, RECENT)
    results = await scheduler.run_due(citus, dt.timedelta(hours=1))
    assert [(r.tenant, r.scheme, r.customers) for r in results if r.tenant == tenant] == [
        (tenant, "recent", 3)
    ]
    again = await scheduler.run_due(citus, dt.timedelta(hours=1))
    assert [r for r in again if r.tenant == tenant] == []


def test_migrate_and_distribute_commands_on_a_distributed_database(citus_database: URL) -> None:
    """`tierwise migrate` on a distributed database distributes what is new (nothing here);
    `tierwise distribute` again changes nothing and says so."""
    migrated = tierwise(citus_database, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "database schema at revision" in migrated.stdout
    assert "distributed on Citus" not in migrated.stdout
    again = tierwise(citus_database, "distribute")
    assert again.returncode == 0, again.stderr
    assert "already distributed: tenants" in again.stdout
    assert "distributed by tenant:" not in again.stdout
