"""Deleting orders and events (tiers and rollups follow, changes recorded) and erasing
customers (nothing of them left, the audit entry kept without their id in clear)."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.access.audit import Actor
from service.data import rollups
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.tables import customer_predictions, customers, metadata, tenants
from service.engine import deletion, evaluation, webhooks
from tests.support import NOW, VALUE, day, load, moves, order, publish, tiers_of

ADMIN = Actor("dpo@example.com", "admin", "test")

CARE = """
scheme care {
  tier Unhappy when count(event "complaint", 365 days) >= 1
  tier Fine    otherwise
}
"""


async def test_deleting_orders_moves_tiers_and_rollups_in_one_go(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(
        engine,
        tenant,
        [order("o1", "c", 10, "4000"), order("o2", "c", 20, "3000"), order("o3", "d", 5, "10")],
    )
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    result = await deletion.delete(engine, tenant, Kind.orders, ["o1", "o1", "nope"], actor=ADMIN)
    assert (result.requested, result.deleted, result.not_found, result.tier_changes) == (
        2,
        1,
        1,
        1,
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"c": "Active", "d": "Active"}
        assert (await moves(connection, tenant))[-1] == ("c", "VIP", "Active", "delete", False)
        assert await rollups.drift(connection, tenant) == 0
        total = await connection.scalar(
            text(
                "SELECT m.order_total FROM customer_metrics m JOIN customers c"
                " ON c.tenant_id = m.tenant_id AND c.id = m.customer_id"
                " WHERE m.tenant_id = :t AND c.external_id = 'c'"
            ),
            {"t": tenant},
        )
        (entry,) = await audit.entries(connection, tenant, action="orders.delete")
    assert total == 3000
    assert (entry.actor, entry.target) == ("dpo@example.com", "orders")
    assert entry.after == {"requested": 2, "deleted": 1, "tier_changes": 1}
    # The customer stays, with no orders left: no rollup row, still a customer.
    await deletion.delete(engine, tenant, Kind.orders, ["o3"], actor=ADMIN)
    async with engine.connect() as connection:
        assert await rollups.drift(connection, tenant) == 0
        assert (await tiers_of(connection, tenant, "value"))["d"] == "Normal"


async def test_deleting_events_moves_tiers(engine: AsyncEngine, tenant: str) -> None:
    events = [
        {"event_id": "e1", "customer_id": "c", "type": "complaint", "occurred_at": day(3)},
        {"event_id": "e2", "customer_id": "c", "type": "login", "occurred_at": day(2)},
    ]
    await import_rows(engine, Kind.events, tenant, enumerate(events, 2), source="test")
    await publish(engine, tenant, CARE)
    await evaluation.evaluate(engine, tenant, "care")
    result = await deletion.delete(engine, tenant, Kind.events, ["e1"], actor=ADMIN)
    assert (result.deleted, result.tier_changes) == (1, 1)
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "care") == {"c": "Fine"}
        assert (await moves(connection, tenant))[-1] == ("c", "Unhappy", "Fine", "delete", False)


async def test_erasing_leaves_nothing_of_the_customer_and_keeps_the_audit_entry(
    engine: AsyncEngine, tenant: str
) -> None:
    people = [
        {"customer_id": "zed-8841", "name": "Zelda Quux", "email": "zq@example.org"},
        {"customer_id": "amy", "name": "Amy"},
    ]
    await import_rows(engine, Kind.customers, tenant, enumerate(people, 2), source="test")
    await load(engine, tenant, [order("o1", "zed-8841", 3, "9000"), order("o2", "amy", 4, "50")])
    events = [{"customer_id": "zed-8841", "type": "complaint", "occurred_at": day(1)}]
    await import_rows(engine, Kind.events, tenant, enumerate(events, 2), source="test")
    await publish(engine, tenant, VALUE + CARE)
    async with engine.begin() as connection:
        await webhooks.create(connection, tenant, ADMIN, url="https://hooks.example.com/tiers")
    await evaluation.evaluate_all(engine, tenant)
    async with engine.connect() as connection:
        zed = await connection.scalar(
            select(customers.c.id).where(
                customers.c.tenant_id == tenant, customers.c.external_id == "zed-8841"
            )
        )
        before = len(await webhooks.deliveries(connection, tenant))
    assert before == 4  # two customers entering two schemes
    async with engine.begin() as connection:  # as `tierwise predict fit` writes them
        await connection.execute(
            customer_predictions.insert().values(
                tenant_id=tenant,
                customer_id=zed,
                model_version=1,
                as_of=NOW,
                repeat_purchases=0,
                purchase_span_days=0,
                observed_days=3,
                p_alive=1.0,
                expected_orders=[0.5],
            )
        )

    result = await deletion.delete(
        engine, tenant, Kind.customers, ["zed-8841", "ghost"], actor=ADMIN
    )
    assert (result.requested, result.deleted, result.not_found) == (2, 1, 1)
    assert result.removed == {
        "orders": 1,
        "events": 1,
        "memberships": 2,
        "transitions": 2,
        "webhook_deliveries": 2,
    }
    async with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if "tenant_id" not in table.c or table.name == "audit_log":
                continue
            rows = await connection.execute(
                text(f"SELECT row_to_json(x)::text FROM {table.name} x WHERE tenant_id = :t"),
                {"t": tenant},
            )
            for (row,) in rows:
                assert not any(s in row for s in ("zed-8841", "Zelda", "zq@")), (table, row)
            if "customer_id" in table.c:
                left = await connection.scalar(
                    select(text("count(*)"))
                    .select_from(table)
                    .where(table.c.tenant_id == tenant, table.c.customer_id == zed)
                )
                assert left == 0, table.name
        assert await tiers_of(connection, tenant, "value") == {"amy": "Active"}
        assert [d.payload["customer"] for d in await webhooks.deliveries(connection, tenant)] == [
            "amy",
            "amy",
        ]
        entries = await audit.entries(connection, tenant, action=deletion.ERASE_ACTION)
        key = await connection.scalar(select(tenants.c.erasure_key).where(tenants.c.id == tenant))
        log = await connection.execute(
            text("SELECT row_to_json(a)::text FROM audit_log a WHERE tenant_id = :t"),
            {"t": tenant},
        )
        assert not any("zed-8841" in row or "Zelda" in row for (row,) in log)
    (entry,) = entries
    assert key is not None and len(key) == 32
    assert entry.target == f"customer:{deletion.erasure_digest(key, 'zed-8841')}"
    assert (entry.actor, entry.role, entry.before, entry.after) == (
        "dpo@example.com",
        "admin",
        None,
        None,
    )

    # The key is the tenant's for good: a later erasure's digest uses the same one.
    await deletion.delete(engine, tenant, Kind.customers, ["amy"], actor=ADMIN)
    async with engine.connect() as connection:
        latest = (await audit.entries(connection, tenant, action=deletion.ERASE_ACTION))[0]
    assert latest.target == f"customer:{deletion.erasure_digest(key, 'amy')}"


def test_the_erasure_digest_is_keyed() -> None:
    digest = deletion.erasure_digest(b"k" * 32, "C000042")
    assert digest.startswith("hmac-sha256:") and len(digest) == len("hmac-sha256:") + 64
    assert digest != deletion.erasure_digest(b"j" * 32, "C000042")
    assert digest != deletion.erasure_digest(b"k" * 32, "C000043")
