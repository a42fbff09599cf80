"""Who may call the API and what each role may do: tokens, the role table field by field,
masking of personal data, API keys over HTTP, WebSocket authentication and rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from strawberry.types.base import get_object_definition

from service.access import audit
from service.access.auth import ROLE_PERMISSIONS, Permission, Role, create_key, revoke_key
from service.api.access import Needs
from service.api.context import Context
from service.api.feed import TransitionFeed
from service.api.schema import Mutation, Query, Subscription, build_schema
from service.app import create_app
from service.config import Settings
from service.db.database import tenant_transaction
from tests.api.support import (
    TEST_SECRET,
    bearer,
    caller,
    codes,
    data,
    post,
    request,
    shop,
    token,
    with_secret,
)
from tests.support import VALUE, day

QUERY = "{ schemes { key } }"

# One operation per root field: every field of the schema must be here (checked below).
OPERATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "customer": ('{ customer(id: "ann") { id } }', {}),
    "explain": ('{ explain(customer: "ann", scheme: "value") { tier } }', {}),
    "customers": ("{ customers(first: 1) { edges { node { id } } } }", {}),
    "segments": ("{ segments { tier } }", {}),
    "schemes": ("{ schemes { key } }", {}),
    "strategies": ("{ strategies { name } }", {}),
    "metrics": ("{ metrics { name } }", {}),
    "schemeVersions": ('{ schemeVersions(scheme: "value") { version } }', {}),
    "schemeDiff": (
        '{ schemeDiff(scheme: "value", fromVersion: 1, toVersion: 1) { addedTiers } }',
        {},
    ),
    "evaluationRuns": ('{ evaluationRuns(scheme: "value") { id } }', {}),
    "tierSizes": (
        '{ tierSizes(scheme: "value", fromDate: "2026-01-01", toDate: "2026-01-02") { tier } }',
        {},
    ),
    "migrationMatrix": (
        '{ migrationMatrix(scheme: "value", fromDate: "2026-01-01", toDate: "2026-01-02") '
        "{ customerCount } }",
        {},
    ),
    "churn": ('{ churn(scheme: "value", since: "2026-01-01") { tier } }', {}),
    "textValues": ('{ textValues(metric: "region") { value } }', {}),
    "checkRules": ("query ($s: String!) { checkRules(source: $s) { ok } }", {"s": VALUE}),
    "previewRules": (
        "query ($s: String!) { previewRules(source: $s) { schemes { scheme } } }",
        {"s": VALUE},
    ),
    "upsertCustomers": (
        'mutation { upsertCustomers(customers: [{id: "dan"}]) { inserted } }',
        {},
    ),
    "recordOrders": (
        "mutation ($o: [OrderInput!]!) { recordOrders(orders: $o) { inserted } }",
        {"o": [{"id": "o9", "customerId": "dan", "orderedAt": day(1), "amount": "5"}]},
    ),
    "recordEvents": (
        "mutation ($e: [EventInput!]!) { recordEvents(events: $e) { inserted } }",
        {"e": [{"customerId": "dan", "type": "login", "occurredAt": day(1)}]},
    ),
    "deleteOrders": ('mutation { deleteOrders(ids: ["o9"]) { deleted } }', {}),
    "deleteEvents": ('mutation { deleteEvents(ids: ["e9"]) { deleted } }', {}),
    "eraseCustomers": ('mutation { eraseCustomers(ids: ["dan"]) { deleted } }', {}),
    "publishScheme": (
        'mutation ($s: String!) { publishScheme(key: "value", source: $s) { changed } }',
        {"s": VALUE},
    ),
    "saveStrategy": (
        'mutation { saveStrategy(strategy: {scheme: "value", tier: "VIP", name: "x", '
        'channel: "email"}) { id } }',
        {},
    ),
    "deleteStrategy": ('mutation { deleteStrategy(id: "1") }', {}),
    "evaluateScheme": ('mutation { evaluateScheme(scheme: "value") { id } }', {}),
    "tierChanged": ("subscription { tierChanged { id } }", {}),
    "webhooks": ("{ webhooks { id } }", {}),
    "webhookDeliveries": ("{ webhookDeliveries { id } }", {}),
    "createWebhook": ('mutation { createWebhook(url: "https://h.example.com") { secret } }', {}),
    "deleteWebhook": ('mutation { deleteWebhook(id: "1") }', {}),
    "replayWebhookDelivery": ('mutation { replayWebhookDelivery(id: "1") { id } }', {}),
    "replayDeadDeliveries": ('mutation { replayDeadDeliveries(webhookId: "1") }', {}),
    "auditLog": ("{ auditLog { action actor } }", {}),
    "model": ("{ model { version } }", {}),
    # No orders here: an admin's fit is refused as BAD_INPUT (too few repeat buyers).
    "fitModel": ("mutation { fitModel { predictions } }", {}),
    "apiKeys": ("{ apiKeys { id } }", {}),
    "createApiKey": ("mutation { createApiKey(role: VIEWER) { key } }", {}),
    "revokeApiKey": ('mutation { revokeApiKey(id: "0000000000000000") { id } }', {}),
}


def _root_fields() -> dict[str, Permission | None]:
    """Each root field's GraphQL name and the permission it declares (None: none declared)."""
    schema = build_schema(Settings())
    found: dict[str, Permission | None] = {}
    for root in (Query, Mutation, Subscription):
        for field in get_object_definition(root, strict=True).fields:
            name = schema.config.name_converter.get_graphql_name(field)
            declared = [e.permission for e in field.extensions if isinstance(e, Needs)]
            found[name] = declared[0] if declared else None
    return found


ROOT_FIELDS = _root_fields()


def test_every_root_field_declares_a_permission_and_has_an_operation_here() -> None:
    assert {name for name, permission in ROOT_FIELDS.items() if permission is None} == set()
    assert set(OPERATIONS) == set(ROOT_FIELDS)


def test_the_docs_say_which_permission_each_field_needs() -> None:
    text = (Path(__file__).parents[2] / "docs/access.md").read_text()
    table = text[text.index("| GraphQL field | permission |") :].split("\n\n", 1)[0]
    documented: dict[str, Permission | None] = {}
    for line in table.splitlines()[2:]:
        fields, permission = line.strip("|").split("|")
        for name in re.findall(r"`(\w+)`", fields):
            documented[name] = Permission(permission.strip().strip("`"))
    assert documented == ROOT_FIELDS


def test_the_role_table_is_the_issues() -> None:
    """Hand-written facts, so that the table the other tests read is itself checked."""

    def may(role: Role, field: str) -> bool:
        permission = ROOT_FIELDS[field]
        return permission is not None and permission in ROLE_PERMISSIONS[role]

    assert not may(Role.viewer, "publishScheme") and may(Role.analyst, "publishScheme")
    assert may(Role.viewer, "customers") and may(Role.viewer, "segments")
    assert not may(Role.ingest, "customers") and not may(Role.ingest, "segments")
    assert may(Role.ingest, "recordOrders") and not may(Role.analyst, "recordOrders")
    assert may(Role.analyst, "previewRules") and not may(Role.viewer, "checkRules")
    assert may(Role.analyst, "saveStrategy") and not may(Role.viewer, "deleteStrategy")
    assert all(may(Role.admin, field) for field in ROOT_FIELDS)
    assert [r for r in Role if Permission.read_personal in ROLE_PERMISSIONS[r]] == [Role.admin]
    assert [r for r in Role if may(r, "createWebhook")] == [Role.admin]
    assert may(Role.ingest, "deleteOrders") and may(Role.ingest, "deleteEvents")
    assert [r for r in Role if may(r, "eraseCustomers")] == [Role.admin]


async def _subscribe(engine: AsyncEngine, tenant: str, role: Role) -> list[str]:
    """The error codes of starting `tierChanged` as ``role`` (empty: it started)."""
    schema = build_schema(Settings())
    feed = TransitionFeed(engine)
    try:
        stream = await schema.subscribe(
            OPERATIONS["tierChanged"][0],
            context_value=Context(engine, caller(tenant, role), Settings(), feed),
        )
        if not isinstance(stream, AsyncGenerator):
            return [e.extensions["code"] for e in stream.errors or []]
        first = asyncio.ensure_future(anext(stream))
        for _ in range(100):
            if feed.active or first.done():
                break
            await asyncio.sleep(0.05)
        if first.done():
            result: Any = first.result()
            return [e.extensions["code"] for e in result.errors or []]
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await stream.aclose()
        return []
    finally:
        await feed.close()


@pytest.mark.parametrize("field", sorted(OPERATIONS))
@pytest.mark.parametrize("role", list(Role))
async def test_each_role_may_do_exactly_what_the_table_says(
    engine: AsyncEngine, tenant: str, role: Role, field: str
) -> None:
    permission = ROOT_FIELDS[field]
    assert permission is not None
    allowed = permission in ROLE_PERMISSIONS[role]
    if field == "tierChanged":
        found = await _subscribe(engine, tenant, role)
    else:
        query, variables = OPERATIONS[field]
        result = await post(engine, tenant, query, variables, role=role)
        found = codes(result)
        if not allowed:
            assert result["data"] is None or result["data"].get(field) is None
    if allowed:
        assert not {"FORBIDDEN", "UNAUTHENTICATED", "INTERNAL"} & set(found), found
    else:
        assert found == ["FORBIDDEN"]


async def test_forbidden_says_which_role_and_permission(engine: AsyncEngine, tenant: str) -> None:
    query, variables = OPERATIONS["publishScheme"]
    result = await post(engine, tenant, query, variables, role=Role.viewer)
    (error,) = result["errors"]
    assert error["extensions"] == {"code": "FORBIDDEN", "permission": "publish_rules"}
    assert error["message"].startswith("role 'viewer' may not do this: it needs publish_rules")


async def test_nothing_is_written_by_a_forbidden_mutation(engine: AsyncEngine, tenant: str) -> None:
    query, variables = OPERATIONS["publishScheme"]
    assert codes(await post(engine, tenant, query, variables, role=Role.ingest)) == ["FORBIDDEN"]
    assert data(await post(engine, tenant, "{ schemes { key } }")) == {"schemes": []}


async def test_roles_at_work(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    # ingest writes data, and the tiers follow.
    query, variables = OPERATIONS["recordOrders"]
    written = await post(engine, tenant, query, variables, role=Role.ingest)
    assert data(written) == {"recordOrders": {"inserted": 1}}
    # viewer reads segments and customers.
    segments = data(await post(engine, tenant, "{ segments { tier } }", role=Role.viewer))
    assert {s["tier"] for s in segments["segments"]} == {"VIP", "Active", "Normal"}
    # analyst publishes, and the audit log names the token's subject.
    changed = VALUE.replace("> 5000", "> 4000")
    query = 'mutation ($s: String!) { publishScheme(key: "value", source: $s) { changed } }'
    published = await post(engine, tenant, query, {"s": changed}, role=Role.analyst)
    assert data(published) == {"publishScheme": {"changed": True}}
    async with tenant_transaction(engine, tenant) as connection:
        (entry,) = await audit.entries(connection, tenant, action="scheme.publish", limit=1)
    assert (entry.actor, entry.role) == ("test", "analyst")


async def test_personal_fields_are_masked_for_roles_without_read_personal(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    async with tenant_transaction(engine, tenant) as connection:
        await connection.exec_driver_sql(
            "UPDATE customers SET email = 'ann@example.com', phone = '+1 555' "
            "WHERE external_id = 'ann'"
        )
    query = '{ customer(id: "ann") { id name email phone region } }'
    for role in (Role.viewer, Role.analyst):
        seen = data(await post(engine, tenant, query, role=role))["customer"]
        assert seen == {"id": "ann", "name": None, "email": None, "phone": None, "region": "east"}
    full = data(await post(engine, tenant, query, role=Role.admin))["customer"]
    assert (full["name"], full["email"], full["phone"]) == ("Ann", "ann@example.com", "+1 555")
    # Also where customers are reached through pages.
    page = "{ customers(first: 5) { edges { node { name } } } }"
    edges = data(await post(engine, tenant, page, role=Role.viewer))["customers"]["edges"]
    assert edges and all(edge["node"]["name"] is None for edge in edges)


# --- refusing callers ------------------------------------------------------------------------


async def _raw(
    engine: AsyncEngine, headers: dict[str, str], settings: Settings | None = None
) -> httpx.Response:
    return await request(engine, {"query": QUERY}, headers, settings=settings)


def _unauthenticated(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    message: str = error["message"]
    return message


async def test_a_request_without_a_token_is_refused(engine: AsyncEngine) -> None:
    message = _unauthenticated(await _raw(engine, {}))
    assert message.startswith("authentication required")


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Bearer not-a-token", "neither a well-formed JWT nor an API key"),
        ("Basic dXNlcjpwYXNz", "must be `Bearer <token>`"),
        (f"Bearer {token('t')[:-3]}abc", "signature does not verify"),
        ("Bearer tw_t_0123456789abcdef_" + "0" * 64, "unknown or revoked API key"),
    ],
)
async def test_a_bad_token_is_refused(
    engine: AsyncEngine, authorization: str, message: str
) -> None:
    assert message in _unauthenticated(await _raw(engine, {"Authorization": authorization}))


async def test_an_expired_token_is_refused(engine: AsyncEngine, tenant: str) -> None:
    expired = jwt.encode(
        {"sub": "x", "tenant": tenant, "role": "admin", "exp": 1_000_000}, TEST_SECRET, "HS256"
    )
    response = await _raw(engine, {"Authorization": f"Bearer {expired}"})
    assert _unauthenticated(response) == "the token has expired"


async def test_without_configuration_requests_are_refused_not_let_through(
    engine: AsyncEngine, tenant: str
) -> None:
    # Authentication is required by default; no secret or public key is configured.
    unconfigured = Settings()
    assert unconfigured.auth_required and unconfigured.jwt_secret is None
    app = create_app(engine, settings=unconfigured)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        bare = await client.post("/graphql", json={"query": QUERY})
        with_jwt = await client.post("/graphql", json={"query": QUERY}, headers=bearer(tenant))
    assert _unauthenticated(bare).startswith("authentication required")
    assert "no TIERWISE_JWT_SECRET or TIERWISE_JWT_PUBLIC_KEYS" in _unauthenticated(with_jwt)


async def test_the_token_decides_the_tenant_a_header_cannot(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    other = f"{tenant}_other"
    headers = {**bearer(other), "X-Tierwise-Tenant": tenant}
    body = {"query": '{ customer(id: "ann") { id } }'}
    response = await request(engine, body, headers)
    assert response.json() == {"data": {"customer": None}}
    response = await request(engine, body, {**bearer(tenant), "X-Tierwise-Tenant": other})
    assert response.json() == {"data": {"customer": {"id": "ann"}}}


async def test_graphiql_page_needs_no_token_but_its_queries_do(engine: AsyncEngine) -> None:
    app = create_app(engine, settings=with_secret())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        query = await client.get("/graphql", params={"query": QUERY})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert query.status_code == 401


async def test_api_keys_work_until_revoked(engine: AsyncEngine, tenant: str) -> None:
    actor = audit.Actor("test", "admin", "test")
    async with tenant_transaction(engine, tenant) as connection:
        key, plain = await create_key(connection, tenant, Role.viewer, actor)
    settings = Settings(api_key_cache_seconds=0)
    headers = {"Authorization": f"Bearer {plain}"}
    assert (await _raw(engine, headers, settings)).json() == {"data": {"schemes": []}}
    forbidden = await request(
        engine, {"query": OPERATIONS["publishScheme"][0], "variables": {"s": VALUE}}, headers
    )
    assert codes(forbidden.json()) == ["FORBIDDEN"]
    async with tenant_transaction(engine, tenant) as connection:
        await revoke_key(connection, tenant, key.id, actor)
    assert "unknown or revoked" in _unauthenticated(await _raw(engine, headers, settings))


# --- rate limits -----------------------------------------------------------------------------


async def test_rate_limit_refuses_with_retry_after_then_recovers(
    engine: AsyncEngine, tenant: str
) -> None:
    # 60 a minute is one a second; a burst of 2.
    settings = with_secret(Settings(rate_limit_per_minute=60, rate_limit_burst=2))
    app = create_app(engine, settings=settings)
    transport = httpx.ASGITransport(app=app)
    mine, others = bearer(tenant), bearer(tenant, Role.viewer)
    others["Authorization"] = f"Bearer {token(tenant, Role.viewer, subject='someone-else')}"
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:

        async def ask(headers: dict[str, str]) -> httpx.Response:
            return await client.post("/graphql", json={"query": QUERY}, headers=headers)

        statuses = [(await ask(mine)).status_code for _ in range(2)]
        limited = await ask(mine)
        # Another caller is not starved by this one.
        assert (await ask(others)).status_code == 200
        await asyncio.sleep(1.05)
        recovered = await ask(mine)
    assert statuses == [200, 200]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    (error,) = limited.json()["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED"}
    assert error["message"].startswith("rate limit exceeded")
    assert recovered.status_code == 200


# --- subscriptions ---------------------------------------------------------------------------


def _connect(app: Any, payload: dict[str, Any] | None) -> int | dict[str, Any]:
    """The close code of a refused connection_init, or the server's first message."""
    with TestClient(app) as client:
        try:
            with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
                message: dict[str, Any] = {"type": "connection_init"}
                if payload is not None:
                    message["payload"] = payload
                ws.send_json(message)
                answer: dict[str, Any] = ws.receive_json()
                return answer
        except WebSocketDisconnect as closed:
            return closed.code


def test_websocket_needs_a_token_in_connection_init(database: URL, tenant: str) -> None:
    own = create_async_engine(database, poolclass=NullPool)
    app = create_app(own, settings=with_secret())
    assert _connect(app, None) == 4403
    assert _connect(app, {"authorization": "Bearer nonsense"}) == 4403
    good = {"authorization": f"Bearer {token(tenant, Role.viewer)}"}
    assert _connect(app, good) == {"type": "connection_ack"}


def test_websocket_subscription_of_a_role_without_the_permission_is_forbidden(
    database: URL, tenant: str
) -> None:
    own = create_async_engine(database, poolclass=NullPool)
    app = create_app(own, settings=with_secret())
    with (
        TestClient(app) as client,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        init = {"authorization": f"Bearer {token(tenant, Role.ingest)}"}
        ws.send_json({"type": "connection_init", "payload": init})
        assert ws.receive_json() == {"type": "connection_ack"}
        query = OPERATIONS["tierChanged"][0]
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
        message = ws.receive_json()
    assert message["type"] == "error" and message["id"] == "1"
    assert [e["extensions"]["code"] for e in message["payload"]] == ["FORBIDDEN"]
