"""The rollup equals a from-scratch recomputation after any sequence of imports."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data import rollups
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.database import create_engine

START = datetime(2025, 1, 1, tzinfo=UTC)

# Few ids, so batches re-send, change and move orders between customers.
orders = st.fixed_dictionaries(
    {
        "order_id": st.sampled_from([f"o{i}" for i in range(12)]),
        "customer_id": st.sampled_from([f"c{i}" for i in range(4)]),
        "ordered_at": st.integers(0, 400).map(lambda d: (START + timedelta(days=d)).isoformat()),
        "amount": st.decimals(-50, 10_000, places=2).map(str),
    }
)
batches = st.lists(st.lists(orders, min_size=1, max_size=8), min_size=1, max_size=5)


async def _replay(database: URL, history: list[list[dict[str, str]]]) -> list[int]:
    engine = create_engine(database, pool_size=1, max_overflow=1)
    tenant = f"r_{secrets.token_hex(5)}"
    drifts = []
    try:
        for batch in history:
            await import_rows(engine, Kind.orders, tenant, enumerate(batch, 2), source="batch")
            async with engine.connect() as connection:
                drifts.append(await rollups.drift(connection, tenant))
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT c.external_id, m.order_total FROM customer_metrics m JOIN customers c"
                    " ON c.tenant_id = m.tenant_id AND c.id = m.customer_id WHERE m.tenant_id = :t"
                ),
                {"t": tenant},
            )
            totals = {customer: total for customer, total in rows}
    finally:
        await engine.dispose()
    assert totals == _expected_totals(history)
    return drifts


def _expected_totals(history: list[list[dict[str, str]]]) -> dict[str, Decimal]:
    latest: dict[str, dict[str, str]] = {}
    for batch in history:
        for order in batch:  # the last line wins within a batch and across batches
            latest[order["order_id"]] = order
    totals: dict[str, Decimal] = {}
    for order in latest.values():
        customer = order["customer_id"]
        totals[customer] = totals.get(customer, Decimal(0)) + Decimal(order["amount"])
    return totals


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=batches)
def test_rollups_match_recomputation_after_any_imports(
    database: URL, history: list[list[dict[str, str]]]
) -> None:
    assert asyncio.run(_replay(database, history)) == [0] * len(history)


async def test_a_rebuild_reads_the_orders_once_whatever_the_statistics_say(
    engine: AsyncEngine, tenant: str
) -> None:
    """A tenant's first big load, before any ANALYZE saw it: Postgres takes its rows for a
    handful. Refunds joined to an aggregate of themselves were then planned as a nested loop
    re-reading the tenant's orders for each order (minutes for 60,000 orders); the plan must
    read them once, and the rollup must count refunded orders right."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO customers (tenant_id, external_id)"
                " SELECT :t, 'c' || g FROM generate_series(0, 1) g"
            ),
            {"t": tenant},
        )
        await connection.execute(text("ANALYZE orders"))
        # 6,000 sales of 10 over two customers; every third sale refunded in full after.
        await connection.execute(
            text(
                """INSERT INTO orders (tenant_id, external_id, customer_id, amount, ordered_at)
                SELECT :t, 'o' || g, c.id, 10, timestamptz '2026-01-01' + g * interval '1 minute'
                FROM generate_series(1, 6000) g
                JOIN customers c ON c.tenant_id = :t AND c.external_id = 'c' || (g % 2)"""
            ),
            {"t": tenant},
        )
        await connection.execute(
            text(
                """INSERT INTO orders
                    (tenant_id, external_id, customer_id, amount, ordered_at, refund_of)
                SELECT :t, 'r' || o.external_id, o.customer_id, -10,
                       o.ordered_at + interval '1 day', o.external_id
                FROM orders o
                WHERE o.tenant_id = :t AND substr(o.external_id, 2)::int % 3 = 0"""
            ),
            {"t": tenant},
        )
        plan = await connection.execute(
            text(f"EXPLAIN (FORMAT JSON) {rollups._AGGREGATE_ALL}"), {"t": tenant}
        )
        await rollups.rebuild(connection, tenant)
        counts = await connection.execute(
            text("SELECT order_count, order_total FROM customer_metrics WHERE tenant_id = :t"),
            {"t": tenant},
        )
        assert sorted(counts) == [(2000, Decimal(20_000)), (2000, Decimal(20_000))]

    def scans(node: dict[str, Any]) -> list[str]:
        own = [node["Relation Name"]] if "Relation Name" in node else []
        return own + [name for child in node.get("Plans", []) for name in scans(child)]

    assert scans(plan.scalar_one()[0]["Plan"]) == ["orders"]


async def test_an_order_whose_refund_came_first_is_recomputed(
    engine: AsyncEngine, tenant: str
) -> None:
    """A refund imported before the order it names: the order is no plain sale, so its
    customer's rollup is recomputed, not grown by it (`new_orders`, service/data/ingest.py)."""
    at = START.isoformat()
    refund = {"order_id": "r", "customer_id": "c", "ordered_at": at, "amount": "-100"}
    sale = {"order_id": "o", "customer_id": "c", "ordered_at": at, "amount": "100"}
    for row in ({**refund, "refund_of": "o"}, sale):
        await import_rows(engine, Kind.orders, tenant, enumerate([row], 2), source="test")
        async with engine.connect() as connection:
            assert await rollups.drift(connection, tenant) == 0
