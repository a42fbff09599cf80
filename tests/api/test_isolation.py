"""Tenant A reaching for tenant B's data through every query, mutation, the `where` language,
forged cursors and subscriptions, against Postgres with row-level security: nothing of B's
comes back and nothing of B's changes."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.context import Context
from service.api.customers import encode_cursor
from service.api.feed import TransitionFeed
from service.api.schema import build_schema
from service.app import create_app
from service.config import Settings
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.database import (
    APP_ROLE,
    TENANT_SETTING,
    DatabaseLimits,
    create_engine,
    tenant_transaction,
)
from service.db.tables import tenants
from service.engine import schemes, strategies
from tests.api.support import bearer, caller, codes, data, post, shop, with_secret
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


# One round of a tenant's activity that makes a row of each kind with an id: a webhook, a
# strategy, runs (two publishes, which move bob and back), deliveries of those moves, audit
# entries of it all, and an API key.
ROUND = [
    (
        'mutation { createWebhook(url: "https://hooks.example.com/t") { webhook { id } } }',
        {},
    ),
    (
        "mutation ($s: StrategyInput!) { saveStrategy(strategy: $s) { id } }",
        {"s": {"scheme": "value", "tier": "VIP", "name": "plan {n}", "channel": "email"}},
    ),
    (PUBLISH, {"s": VALUE.replace("> 5000", "> 0").replace(">= 2", ">= 1")}),
    (PUBLISH, {"s": VALUE}),
    ('mutation { createApiKey(role: VIEWER, name: "k") { key apiKey { id } } }', {}),
]

ROW_IDS = """{
  strategies { id name }
  webhooks { id }
  webhookDeliveries(first: 100) { id webhookId }
  evaluationRuns(scheme: "value", last: 100) { id }
  auditLog(first: 100) { id action target before after }
  apiKeys { id }
}"""


async def _round(engine: AsyncEngine, tenant: str, n: int) -> None:
    for query, variables in ROUND:
        if "s" in variables and isinstance(variables["s"], dict):
            variables = {"s": {**variables["s"], "name": f"plan {n}"}}
        data(await post(engine, tenant, query, variables))


def _shown_ids(seen: dict[str, Any]) -> list[str]:
    """Every id-like value in an answer of ROW_IDS: ids, webhook ids, audit targets and the
    ids inside audited things."""
    found = [row["id"] for field in seen.values() for row in field]
    found += [row["webhookId"] for row in seen["webhookDeliveries"]]
    for entry in seen["auditLog"]:
        found.append(entry["target"])
        for thing in (entry["before"], entry["after"]):
            if isinstance(thing, dict) and entry["action"].startswith("strategy."):
                found.append(str(thing["id"]))
            if isinstance(thing, dict) and entry["action"] == "webhook.replay":
                found += [str(d) for d in thing["deliveries"]]
    return found


async def _internal_ids(engine: AsyncEngine, tenant: str) -> set[str]:
    async with engine.connect() as connection:
        found: set[str] = set()
        for table in ("strategies", "webhooks", "webhook_deliveries", "evaluation_runs"):
            rows = await connection.scalars(
                text(f"SELECT id FROM {table} WHERE tenant_id = :t"), {"t": tenant}
            )
            found |= {str(n) for n in rows}
        rows = await connection.scalars(
            text("SELECT id FROM audit_log WHERE tenant_id = :t"), {"t": tenant}
        )
        return found | {str(n) for n in rows}


async def test_row_ids_tell_nothing_of_other_tenants_volume(
    engine: AsyncEngine, tenant: str
) -> None:
    """Strategies, webhooks, deliveries, runs and audit entries are numbered by sequences
    shared by all tenants; B, making one round of rows before and one after A made three,
    saw the gap. Now B sees opaque ids (service/db/ids.py): none of the internal numbers
    anywhere, the same kind of token whatever A did, and A's ids name nothing in B."""
    await shop(engine, tenant)
    b, _, _ = await _tenant_b(engine, tenant)
    await _round(engine, b, 1)
    for n in range(3):
        await _round(engine, tenant, n)
    await _round(engine, b, 2)
    seen = data(await post(engine, b, ROW_IDS))
    theirs = data(await post(engine, tenant, ROW_IDS))
    assert len(seen["webhooks"]) == 2 and len(seen["evaluationRuns"]) >= 4
    assert seen["webhookDeliveries"] and len(seen["apiKeys"]) == 2

    shown = _shown_ids(seen)
    internal = await _internal_ids(engine, b) | await _internal_ids(engine, tenant)
    assert not internal & set(shown)
    assert not any(re.fullmatch(r"(webhook:)?[0-9]+", value) for value in shown)
    for row_id in [row["id"] for field in seen.values() for row in field]:
        # An opaque token of 16 bytes, or an API key's random 16 hex digits.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}|[0-9a-f]{16}", row_id), row_id
    webhook_targets = [e["target"] for e in seen["auditLog"] if e["action"] == "webhook.create"]
    assert sorted(webhook_targets) == sorted(f"webhook:{w['id']}" for w in seen["webhooks"])
    strategy_ids = {e["after"]["id"] for e in seen["auditLog"] if e["action"] == "strategy.create"}
    assert strategy_ids <= {s["id"] for s in seen["strategies"]}

    # A's ids, asked for in B, name nothing of B's (and reach none of A's).
    strategy = theirs["strategies"][0]["id"]
    webhook = theirs["webhooks"][0]["id"]
    delivery = theirs["webhookDeliveries"][0]["id"]
    run, entry = theirs["evaluationRuns"][0]["id"], theirs["auditLog"][0]["id"]
    key = theirs["apiKeys"][0]["id"]
    b_runs = [r["id"] for r in seen["evaluationRuns"]]
    for query in (
        f'mutation {{ replayWebhookDelivery(id: "{delivery}") {{ id }} }}',
        f'mutation {{ replayDeadDeliveries(webhookId: "{webhook}") }}',
        f'mutation {{ revokeApiKey(id: "{key}") {{ id }} }}',
        f'{{ webhookDeliveries(webhookId: "{webhook}") {{ id }} }}',
        f'{{ webhookDeliveries(before: "{delivery}") {{ id }} }}',
        f'{{ auditLog(before: "{entry}") {{ id }} }}',
        f'{{ migrationMatrix(scheme: "value", fromRun: "{run}", toRun: "{b_runs[0]}") '
        "{ customerCount } }",
        # One kind's id is no other kind's, even in its own tenant.
        f'{{ webhookDeliveries(webhookId: "{seen["strategies"][0]["id"]}") {{ id }} }}',
    ):
        assert codes(await post(engine, b, query)) == ["NOT_FOUND"], query
    for query in (
        f'mutation {{ deleteStrategy(id: "{strategy}") }}',
        f'mutation {{ deleteWebhook(id: "{webhook}") }}',
    ):
        assert list(data(await post(engine, b, query)).values()) == [False], query
    assert data(await post(engine, tenant, ROW_IDS)) == theirs
    # B's own ids work.
    first, last = b_runs[-1], b_runs[0]
    matrix = (
        f'{{ migrationMatrix(scheme: "value", fromRun: "{first}", toRun: "{last}") {{ toTier }} }}'
    )
    assert data(await post(engine, b, matrix))["migrationMatrix"]
    newest = seen["auditLog"][0]["id"]
    older = data(await post(engine, b, f'{{ auditLog(before: "{newest}") {{ id }} }}'))
    assert [e["id"] for e in older["auditLog"]] == [e["id"] for e in seen["auditLog"][1:]]


async def test_no_mutation_changes_another_tenants_data(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    b, _, _ = await _tenant_b(engine, tenant)
    before = await _b_state(engine, b)
    (b_strategy,) = [
        s["id"]
        for s in data(await post(engine, b, "{ strategies { id name } }"))["strategies"]
        if s["name"] == "B plan"
    ]
    deleted = await post(
        engine, tenant, "mutation ($id: ID!) { deleteStrategy(id: $id) }", {"id": b_strategy}
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


# The customer card and a page, as a frontend asks for them: everything a query reads goes
# through the request's one shared connection.
CARD = """query ($id: ID!) {
  customer(id: $id) { id name tiers { scheme tier } strategies { name } }
  customers(first: 10) { totalCount edges { node { id tiers { tier } } } }
}"""


async def _interleaved(
    engine: AsyncEngine, asks: list[tuple[str, str]], cancel_every: int
) -> list[tuple[str, str, dict[str, Any] | None]]:
    """All of ``asks`` (tenant, customer id) at once against one app on ``engine``; every
    ``cancel_every``-th request is cancelled after a few milliseconds (the client gone)."""
    app = create_app(engine, settings=with_secret())
    transport = httpx.ASGITransport(app=app)

    async def ask(tenant: str, customer: str) -> dict[str, Any]:
        async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
            response = await client.post(
                "/graphql",
                json={"query": CARD, "variables": {"id": customer}},
                headers=bearer(tenant),
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    tasks = [asyncio.create_task(ask(tenant, customer)) for tenant, customer in asks]
    for index, task in enumerate(tasks):
        if index % cancel_every == cancel_every - 1:
            await asyncio.sleep(0.002 * (index % 7))
            task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    answers: list[tuple[str, str, dict[str, Any] | None]] = []
    for (tenant, customer), outcome in zip(asks, done, strict=True):
        if isinstance(outcome, asyncio.CancelledError):
            answers.append((tenant, customer, None))
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            answers.append((tenant, customer, outcome))
    return answers


async def _pool_is_clean(engine: AsyncEngine) -> None:
    """Nothing checked out, and the pooled connection carries no tenant and no role."""
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(f"SELECT current_user, nullif(current_setting('{TENANT_SETTING}', true), '')")
            )
        ).one()
    assert row[0] != APP_ROLE and row[1] is None, row


async def test_tenants_interleaved_on_one_pooled_connection_with_cancellations(
    database: URL, engine: AsyncEngine, tenant: str
) -> None:
    """Requests of two tenants at once, some cancelled midway, on a pool of one connection
    (so each request's shared connection is the last one's): every answer is its own
    tenant's, exactly as when asked alone, and the connection is clean afterwards."""
    await shop(engine, tenant)
    b, _, _ = await _tenant_b(engine, tenant)
    one = create_engine(database, pool_size=1, max_overflow=0)
    try:
        alone = {
            (t, c): data(await post(engine, t, CARD, {"id": c}))
            for t in (tenant, b)
            for c in ("ann", "zed")
        }
        assert alone[(tenant, "zed")]["customer"] is None
        assert not _mentions_b(alone[(tenant, "ann")])
        assert alone[(b, "zed")]["customer"]["name"] == "Zed"
        asks = [(t, c) for _ in range(6) for t in (tenant, b) for c in ("ann", "zed")]
        answers = await _interleaved(one, asks, cancel_every=3)
        assert sum(found is None for _, _, found in answers) == len(asks) // 3
        for t, c, found in answers:
            if found is not None:
                assert found == {"data": alone[(t, c)]}, (t, c, found)
        await _pool_is_clean(one)
        # And after the cancellations, each tenant again gets exactly its own.
        for t, c, found in await _interleaved(one, asks, cancel_every=len(asks) + 1):
            assert found == {"data": alone[(t, c)]}, (t, c, found)
        await _pool_is_clean(one)
    finally:
        await one.dispose()


async def test_a_failed_request_leaves_nothing_of_its_tenant_on_the_connection(
    database: URL, engine: AsyncEngine, tenant: str
) -> None:
    """A statement stopped by its timeout in the middle of a query (the shared connection's
    transaction aborted; the customers table is locked meanwhile, so it certainly is): the
    request fails with TIMEOUT, and the next tenant on the same connection sees only its own
    rows."""
    await shop(engine, tenant)
    b, _, _ = await _tenant_b(engine, tenant)
    quick = create_engine(
        database, pool_size=1, max_overflow=0, limits=DatabaseLimits(statement_timeout=0.3)
    )
    try:
        async with engine.begin() as locker:
            await locker.execute(text("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"))
            for _ in range(2):
                failed = await post(quick, tenant, CARD, {"id": "ann"})
                assert set(codes(failed)) == {"TIMEOUT"}, failed
        await _pool_is_clean(quick)
        found = data(await post(quick, b, CARD, {"id": "zed"}))
        assert found["customer"]["name"] == "Zed"
        assert data(await post(quick, tenant, CARD, {"id": "zed"}))["customer"] is None
        await _pool_is_clean(quick)
    finally:
        await quick.dispose()


def _own(
    answers: list[tuple[str, str, dict[str, Any] | None]],
    alone: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Each answer is its tenant's: the customer as when asked alone, the same page of ids
    (tiers on the page may move meanwhile: a tier change is being recorded)."""
    for t, c, found in answers:
        if found is None:
            continue
        assert found["data"]["customer"] == alone[(t, c)]["customer"], (t, c, found)
        ids = [edge["node"]["id"] for edge in found["data"]["customers"]["edges"]]
        assert ids == [edge["node"]["id"] for edge in alone[(t, c)]["customers"]["edges"]]


async def test_subscriptions_and_interleaved_queries_on_one_pooled_connection(
    database: URL, engine: AsyncEngine, tenant: str
) -> None:
    """A's subscription and both tenants' queries (some cancelled) share a pool of one
    connection: A hears only its own change, every query answer is its own tenant's."""
    await shop(engine, tenant)
    b, _, _ = await _tenant_b(engine, tenant)
    one = create_engine(database, pool_size=1, max_overflow=0)
    feed = TransitionFeed(one)
    try:
        alone = {(t, "ann"): data(await post(engine, t, CARD, {"id": "ann"})) for t in (tenant, b)}
        stream = await build_schema(Settings()).subscribe(
            "subscription { tierChanged { scheme customerId toTier } }",
            context_value=Context(one, caller(tenant), Settings(), feed),
        )
        assert isinstance(stream, AsyncGenerator)
        first = asyncio.ensure_future(anext(stream))
        for _ in range(200):
            if feed.active:
                break
            await asyncio.sleep(0.05)
        asks = [(t, "ann") for _ in range(8) for t in (tenant, b)]
        moved = [{"id": "o9", "customerId": "cyd", "orderedAt": day(1), "amount": "9000"}]
        record = "mutation ($o: [OrderInput!]!) { recordOrders(orders: $o) { tierChanges } }"
        answers, _ = await asyncio.gather(
            _interleaved(one, asks, cancel_every=4), post(one, b, record, {"o": moved})
        )
        _own(answers, alone)
        await asyncio.sleep(0.5)
        assert not first.done()
        moved = [{"id": "o9", "customerId": "bob", "orderedAt": day(1), "amount": "6000"}]
        answers, _ = await asyncio.gather(
            _interleaved(one, asks, cancel_every=4), post(one, tenant, record, {"o": moved})
        )
        heard: Any = await asyncio.wait_for(first, timeout=10)
        assert heard.data["tierChanged"]["customerId"] == "bob"
        await stream.aclose()
        _own(answers, alone)
        await _pool_is_clean(one)
    finally:
        await feed.close()
        await one.dispose()
