"""Text compared by rules is NFC on both sides: rule text is read in NFC, and ingest stores the
compared columns in NFC, so a rule matches however its author or the data typed an accent."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data.ingest import import_file, import_rows
from service.data.records import Kind
from service.db.tables import customers, orders
from service.engine import evaluation
from tests.support import day, publish, tiers_of

DECOMPOSED = "Mu\u0308nchen"  # u + combining diaeresis
COMPOSED = "M\u00fcnchen"

RULES = f"""scheme place {{
  tier Local   when region = "{COMPOSED}" and attributes.cafe\u0301 = "{DECOMPOSED}"
  tier Books   when frequency(category "Bu\u0308cher") >= 1
  tier Elsewhere otherwise
}}
"""


async def test_decomposed_data_matches_composed_rules(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    # The CSV bulk path (cast in SQL) and the row path (parsed in Python) alike.
    csv = tmp_path / "customers.csv"
    csv.write_text(
        f'customer_id,region,attributes\nA,{DECOMPOSED},"{{""café"": ""{DECOMPOSED}""}}"\n'
    )
    await import_file(engine, Kind.customers, tenant, csv)
    rows = [
        {"customer_id": "B", "region": DECOMPOSED, "attributes.cafe\u0301": COMPOSED},
        {"customer_id": "C", "region": "Berlin"},
    ]
    await import_rows(engine, Kind.customers, tenant, enumerate(rows, 2), source="test")
    order = {"order_id": "o1", "customer_id": "C", "ordered_at": day(3), "amount": "10"}
    await import_rows(
        engine,
        Kind.orders,
        tenant,
        [(2, {**order, "category": "Bu\u0308cher"})],
        source="test",
    )
    await publish(engine, tenant, RULES)
    await evaluation.evaluate(engine, tenant, "place")
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "place") == {
            "A": "Local",
            "B": "Local",
            "C": "Books",
        }
        stored = (
            await connection.execute(
                select(customers.c.region, customers.c.attributes).where(
                    customers.c.tenant_id == tenant
                )
            )
        ).all()
        category = await connection.scalar(
            select(orders.c.category).where(orders.c.tenant_id == tenant)
        )
    for region, attributes in stored:
        assert unicodedata.is_normalized("NFC", region)
        for key, value in attributes.items():
            assert unicodedata.is_normalized("NFC", key) and unicodedata.is_normalized("NFC", value)
    assert category == "B\u00fccher"
