"""Tenant A reaching for tenant B's data through every query, mutation, the `where` language,
forged cursors and subscriptions, against Postgres with row-level security: nothing of B's
comes back and nothing of B's changes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.context import Context
from service.api.customers import encode_cursor
from service.api.feed import TransitionFeed
from service.api.schema import build_schema
from service.config import Settings
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.database import tenant_transaction
from service.db.tables import tenants
from service.engine import schemes, strategies
from tests.api.support import caller, codes, data, post, shop
from tests.support import VALUE, day, order

# B's own names, so that anything of B's showing up in A's answers is recognisable.
PUBLISH = 'mutation ($s: String!) { publishScheme(key: "value", source: $s) { changed } }'
B_SCHEME = VALUE.replace("scheme value", "scheme b_secret").replace("VIP", "Bgold")


async def _tenant_b(engine: AsyncEngine, tenant: str) -> tuple[str, int, int]:
    """Tenant B: the shop, plus customer `zed`, scheme `b_secret` and strategy `B plan`;
    returns B's id, zed's internal id and the strategy's id."""
    b = f"{tenant}_b"
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=b, name=b))
    await shop(engine, b)
    rows = [{"customer_id": "zed", "name": "Zed", "email": "zed@b.example", "region": "east"}]
    await import_rows(engine, Kind.customers, b, enumerate(rows), source="test")
    big = [order("z1", "zed", 3, "9000"), order("z2", "zed", 4, "9000")]
    await import_rows(engine, Kind.orders, b, enumerate(big), source="test")
    async with tenant_transaction(engine, b) as connection:
        await schemes.publish(connection, b, B_SCHEME)
        saved = await strategies.save(
            connection, b, scheme="value", tier="VIP", name="B plan", channel="sms"
        )
        zed = await connection.scalar(
            text("SELECT id FROM customers WHERE tenant_id = :t AND external_id = 'zed'"),
            {"t": b},
        )
    return b, int(zed), saved.id


async def _b_state(engine: AsyncEngine, b: str) -> dict[str, Any]:
    """Everything of B's the attempts could change, read as the owner (no row security)."""
    async with engine.connect() as connection:
        state = {}
        for table in ("customers", "orders", "strategies", "schemes", "memberships"):
            state[table] = (
                await connection.execute(
                    text(
                        f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t "
                        "WHERE tenant_id = :t"
                    ),
                    {"t": b},
                )
            ).scalar()
    return state


def _mentions_b(result: dict[str, Any]) -> bool:
    """Whether B's names are in the answer's data (an error may echo the id asked for)."""
    body = repr(result.get("data"))
    return any(mark in body for mark in ("zed", "Zed", "b_secret", "Bgold", "B plan"))


QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "customer": ("query ($id: ID!) { customer(id: $id) { id name email } }", {"id": "zed"}),
    "explain": (
        'query ($id: ID!) { explain(customer: $id, scheme: "value") { tier } }',
        {"id": "zed"},
    ),
    "customers": (
        "{ customers(first: 100) { totalCount edges { node { id name } } } }",
        {},
    ),
    "customers of B's tier": (
        '{ customers(scheme: "b_secret", tier: "Bgold") { totalCount edges { node { id } } } }',
        {},
    ),
    "customers where": (
        '{ customers(where: "monetary > 10000") { totalCount edges { node { id } } } }',
        {},
    ),
    "segments": ("{ segments { scheme tier customerCount revenue } }", {}),
    "segments of B's scheme": ('{ segments(scheme: "b_secret") { tier customerCount } }', {}),
    "schemes": ("{ schemes { key title } }", {}),
    "strategies": ("{ strategies { id name scheme tier } }", {}),
    "checkRules": (
        "query ($s: String!) { checkRules(source: $s) { ok diagnostics { message } } }",
        {"s": "scheme x {\n tier X when in tier b_secret.Bgold\n tier Y otherwise\n}"},
    ),
    "previewRules": (
        "query ($s: String!) "
        "{ previewRules(source: $s) { schemes { tiers { tier customerCount } } } }",
        {"s": VALUE},
    ),
}


async def test_no_query_returns_another_tenants_data(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    await _tenant_b(engine, tenant)
    for name, (query, variables) in QUERIES.items():
        result = await post(engine, tenant, query, variables)
        # checkRules' diagnostic names the scheme asked for (asserted below).
        assert name == "checkRules" or not _mentions_b(result), (name, result)
        assert set(codes(result)) <= {"NOT_FOUND", "BAD_RULE"}, (name, result)
    customers = data(await post(engine, tenant, QUERIES["customers"][0]))["customers"]
    assert customers["totalCount"] == 3
    preview = data(await post(engine, tenant, *QUERIES["previewRules"]))["previewRules"]
    assert sum(t["customerCount"] for t in preview["schemes"][0]["tiers"]) == 3
    check = data(await post(engine, tenant, *QUERIES["checkRules"]))["checkRules"]
    assert check == {"ok": False, "diagnostics": [{"message": "unknown scheme `b_secret`"}]}


async def test_a_cursor_forged_from_another_tenants_ids_pages_only_ones_own(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    await _tenant_b(engine, tenant)
    # Just before B's `zed` in the order of ids, and before everyone.
    for forged in (encode_cursor("zec"), encode_cursor("\x01")):
        result = await post(
            engine,
            tenant,
            "query ($after: String) { customers(first: 100, after: $after) "
            "{ edges { node { id } } } }",
            {"after": forged},
        )
        assert not _mentions_b(result), result
        ids = {edge["node"]["id"] for edge in data(result)["customers"]["edges"]}
        assert ids <= {"ann", "bob", "cyd"}


async def test_ids_and_cursors_tell_nothing_of_other_tenants_volume(
    engine: AsyncEngine, tenant: str
) -> None:
    """Cursors and transition ids came from sequences shared by all tenants, so the gaps one
    tenant saw measured the others' customers and tier changes. Now a cursor holds the
    customer's own id and a transition is numbered within its tenant and scheme: B's first
    changes are `value:1`.. however much A did before."""
    await shop(engine, tenant)
    for _ in range(3):  # A's busy history: bob moves to VIP and back each time
        looser = VALUE.replace("> 5000", "> 0").replace(">= 2", ">= 1")
        assert data(await post(engine, tenant, PUBLISH, {"s": looser}))
        assert data(await post(engine, tenant, PUBLISH, {"s": VALUE}))
    b, _, _ = await _tenant_b(engine, tenant)
    query = """{ customers(first: 2) { pageInfo { endCursor }
      edges { node { id history { id } } } } }"""
    page = data(await post(engine, b, query))["customers"]
    assert base64.urlsafe_b64decode(page["pageInfo"]["endCursor"]).decode() == "customer-id:bob"
    ids = sorted(h["id"] for edge in page["edges"] for h in edge["node"]["history"])
    assert ids == ["value:1", "value:2"]


async def test_no_mutation_changes_another_tenants_data(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    b, _, b_strategy = await _tenant_b(engine, tenant)
    before = await _b_state(engine, b)
    deleted = await post(
        engine, tenant, "mutation ($id: ID!) { deleteStrategy(id: $id) }", {"id": str(b_strategy)}
    )
    assert data(deleted)["deleteStrategy"] is False
    evaluated = await post(
        engine, tenant, 'mutation { evaluateScheme(scheme: "b_secret") { scheme } }'
    )
    assert codes(evaluated) == ["NOT_FOUND"]
    # The same external ids in A make A's own rows; B's zed keeps his name and orders.
    await post(
        engine,
        tenant,
        "mutation ($c: [CustomerInput!]!) { upsertCustomers(customers: $c) { inserted } }",
        {"c": [{"id": "zed", "name": "Not Zed"}]},
    )
    await post(
        engine,
        tenant,
        "mutation ($o: [OrderInput!]!) { recordOrders(orders: $o) { inserted } }",
        {"o": [{"id": "z1", "customerId": "zed", "orderedAt": day(1), "amount": "1"}]},
    )
    await post(
        engine,
        tenant,
        'mutation ($s: String!) { publishScheme(key: "b_secret", source: $s) { changed } }',
        {"s": B_SCHEME.replace("Bgold", "Agold")},
    )
    await post(
        engine,
        tenant,
        "mutation ($s: StrategyInput!) { saveStrategy(strategy: $s) { id } }",
        {"s": {"scheme": "value", "tier": "VIP", "name": "B plan", "channel": "email"}},
    )
    # Deleting and erasing by B's ids takes A's rows of those ids, never B's.
    deleted = await post(engine, tenant, 'mutation { deleteOrders(ids: ["z1", "z2"]) { deleted } }')
    assert data(deleted) == {"deleteOrders": {"deleted": 1}}
    erased = await post(engine, tenant, 'mutation { eraseCustomers(ids: ["zed"]) { deleted } }')
    assert data(erased) == {"eraseCustomers": {"deleted": 1}}
    assert await _b_state(engine, b) == before


async def test_subscriptions_hear_only_their_tenants_changes(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    b, _, _ = await _tenant_b(engine, tenant)
    feed = TransitionFeed(engine)
    stream = await build_schema(Settings()).subscribe(
        "subscription { tierChanged { scheme customerId toTier } }",
        context_value=Context(engine, caller(tenant), Settings(), feed),
    )
    assert isinstance(stream, AsyncGenerator)
    first = asyncio.ensure_future(anext(stream))
    for _ in range(200):
        if feed.active:
            break
        await asyncio.sleep(0.05)
    # B's cyd becomes VIP: A hears nothing of it; then A's bob moves, and that is what A hears.
    orders = [{"id": "o9", "customerId": "cyd", "orderedAt": day(1), "amount": "9000"}]
    await post(
        engine,
        b,
        "mutation ($o: [OrderInput!]!) { recordOrders(orders: $o) { tierChanges } }",
        {"o": orders},
    )
    await asyncio.sleep(0.5)
    assert not first.done()
    orders = [{"id": "o9", "customerId": "bob", "orderedAt": day(1), "amount": "6000"}]
    await post(
        engine,
        tenant,
        "mutation ($o: [OrderInput!]!) { recordOrders(orders: $o) { tierChanges } }",
        {"o": orders},
    )
    heard: Any = await asyncio.wait_for(first, timeout=10)
    assert heard.data["tierChanged"]["customerId"] == "bob"
    await stream.aclose()
    await feed.close()
