"""The rollup equals a from-scratch recomputation after any sequence of imports."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import URL

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
