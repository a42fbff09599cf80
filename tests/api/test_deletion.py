"""Deleting orders and events and erasing customers over GraphQL: tiers follow a deletion, and
after an erasure no query returns anything of the customer while the audit entry stays."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from service.config import Settings
from service.data.ingest import import_rows
from service.data.records import Kind
from service.engine import evaluation
from tests.api.support import codes, data, post, shop
from tests.support import day, order

# Zed's own marks: any of them in an answer is something of Zed's read back.
ZED = {"customer_id": "zed-8841", "name": "Zelda Quux", "email": "zq@example.org"}
MARKS = ("zed-8841", "Zelda", "zq@example.org", "+44 7700 900461")

CUSTOMER_FIELDS = """id name email phone age gender occupation region industry companySize
  registeredAt attributes tiers { scheme tier since } strategies { name }
  metrics { recency frequency monetary } explain(scheme: "value") { tier }
  history { customerId fromTier toTier customer { id } }"""

# Every query that can return something of a customer, with what it asks.
READS: dict[str, tuple[str, dict[str, Any]]] = {
    "customer": (f'{{ customer(id: "zed-8841") {{ {CUSTOMER_FIELDS} }} }}', {}),
    "explain": ('{ explain(customer: "zed-8841", scheme: "value") { tier } }', {}),
    "customers": (
        f"{{ customers(first: 10) {{ totalCount edges {{ node {{ {CUSTOMER_FIELDS} }} }} }} }}",
        {},
    ),
    "customers of a tier": (
        '{ customers(scheme: "value", tier: "VIP") { totalCount edges { node { id } } } }',
        {},
    ),
    "customers where": (
        '{ customers(where: "monetary > 5000") { totalCount edges { node { id } } } }',
        {},
    ),
    "segments": ("{ segments { scheme tier customerCount revenue } }", {}),
    "webhookDeliveries": (
        "{ webhookDeliveries(first: 100) { eventId payload lastError } }",
        {},
    ),
    "auditLog": (
        "{ auditLog(first: 100) { actor role action target before after source requestId } }",
        {},
    ),
}
FEDERATED = Settings(federation=True)
ENTITIES = """query ($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { id } } }"""


def _mentions_zed(result: dict[str, Any]) -> bool:
    body = json.dumps(result.get("data"))
    return any(mark in body for mark in MARKS)


async def _zed(engine: AsyncEngine, tenant: str) -> None:
    """Zed on top of the shop: a profile, two big orders (VIP), an event, a webhook that got
    his tier changes."""
    created = await post(
        engine, tenant, 'mutation { createWebhook(url: "https://hooks.example.com/t") { secret } }'
    )
    data(created)
    person = [{**ZED, "phone": "+44 7700 900461", "region": "north"}]
    await import_rows(engine, Kind.customers, tenant, enumerate(person), source="test")
    rows = [order("z1", "zed-8841", 3, "4000"), order("z2", "zed-8841", 4, "4000")]
    await import_rows(
        engine,
        Kind.orders,
        tenant,
        enumerate(rows),
        source="test",
        after_load=evaluation.refresh_affected,
    )
    events = [{"customer_id": "zed-8841", "type": "login", "occurred_at": day(1)}]
    await import_rows(engine, Kind.events, tenant, enumerate(events), source="test")


async def test_after_an_erasure_no_query_returns_anything_of_the_customer(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    await _zed(engine, tenant)
    # Before: every read below can see Zed, so the same reads after prove something.
    seen = {
        name
        for name, (query, vs) in READS.items()
        if _mentions_zed(await post(engine, tenant, query, vs))
    }
    assert seen == set(READS) - {"explain", "segments", "auditLog"}
    assert data(await post(engine, tenant, READS["explain"][0])) == {"explain": {"tier": "VIP"}}
    entities = {"r": [{"__typename": "Customer", "id": "zed-8841"}]}
    assert data(await post(engine, tenant, ENTITIES, entities, settings=FEDERATED)) == {
        "_entities": [{"id": "zed-8841"}]
    }
    before = data(await post(engine, tenant, READS["segments"][0]))["segments"]
    assert sum(s["customerCount"] for s in before) == 4

    erased = await post(
        engine,
        tenant,
        'mutation { eraseCustomers(ids: ["zed-8841", "ghost"]) '
        "{ requested deleted notFound tierChanges } }",
    )
    assert data(erased) == {
        "eraseCustomers": {"requested": 2, "deleted": 1, "notFound": 1, "tierChanges": 0}
    }

    for name, (query, variables) in READS.items():
        result = await post(engine, tenant, query, variables)
        assert not _mentions_zed(result), (name, result)
        assert set(codes(result)) <= {"NOT_FOUND"}, (name, result)
    assert data(await post(engine, tenant, READS["customer"][0])) == {"customer": None}
    assert codes(await post(engine, tenant, READS["explain"][0])) == ["NOT_FOUND"]
    assert data(await post(engine, tenant, ENTITIES, entities, settings=FEDERATED)) == {
        "_entities": [None]
    }
    after = data(await post(engine, tenant, READS["segments"][0]))["segments"]
    assert sum(s["customerCount"] for s in after) == 3
    customers = data(await post(engine, tenant, READS["customers"][0]))["customers"]
    assert customers["totalCount"] == 3
    # The audit entry stays: who erased, and when, naming the customer by a digest only.
    log = data(await post(engine, tenant, READS["auditLog"][0]))["auditLog"]
    (entry,) = [e for e in log if e["action"] == "customer.erase"]
    assert (entry["actor"], entry["role"], entry["before"], entry["after"]) == (
        "test",
        "ADMIN",
        None,
        None,
    )
    assert entry["target"].startswith("customer:hmac-sha256:")


async def test_deleting_orders_over_graphql_moves_tiers(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    query = (
        "mutation ($ids: [ID!]!) "
        "{ deleteOrders(ids: $ids) { requested deleted notFound tierChanges } }"
    )
    deleted = await post(engine, tenant, query, {"ids": ["o1"]}, role=Role.ingest)
    assert data(deleted) == {
        "deleteOrders": {"requested": 1, "deleted": 1, "notFound": 0, "tierChanges": 1}
    }
    ann = data(
        await post(
            engine,
            tenant,
            '{ customer(id: "ann") { tiers { tier } '
            "history(last: 1) { fromTier toTier trigger } } }",
        )
    )["customer"]
    assert ann == {
        "tiers": [{"tier": "Active"}],
        "history": [{"fromTier": "VIP", "toTier": "Active", "trigger": "delete"}],
    }
    log = data(
        await post(engine, tenant, '{ auditLog(action: "orders.delete") { actor role after } }')
    )
    assert log["auditLog"] == [
        {
            "actor": "test",
            "role": "INGEST",
            "after": {"requested": 1, "deleted": 1, "tier_changes": 1},
        }
    ]
    events = await post(engine, tenant, 'mutation { deleteEvents(ids: ["none"]) { notFound } }')
    assert data(events) == {"deleteEvents": {"notFound": 1}}
    # An ingest key takes back data; erasing is for admins only.
    erase = 'mutation { eraseCustomers(ids: ["ann"]) { deleted } }'
    assert codes(await post(engine, tenant, erase, role=Role.ingest)) == ["FORBIDDEN"]


async def test_a_deletion_carries_at_most_the_ingest_row_limit(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    small = Settings(max_ingest_rows=1)
    query = 'mutation { deleteOrders(ids: ["o1", "o2"]) { deleted } }'
    assert codes(await post(engine, tenant, query, settings=small)) == ["LIMIT_EXCEEDED"]
    segments = data(await post(engine, tenant, "{ segments { tier customerCount } }"))
    assert segments["segments"][0] == {"tier": "VIP", "customerCount": 1}
