"""The webhook fields: register (the secret shown once), list, delete, deliveries, replay;
admin only."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.access.auth import Role
from service.config import Settings
from service.db.database import tenant_transaction
from service.engine import evaluation
from tests.api.support import codes, data, post, shop
from tests.support import load, order

# Of an id's shape, but no row's: the delivery ids the API gives out are of the deployment's key.
MADE_UP = "A" * 22

CREATE = """
mutation ($url: String!, $scheme: String, $tier: String) {
  createWebhook(url: $url, scheme: $scheme, tier: $tier) {
    secret
    webhook { id url scheme tier active createdBy }
  }
}
"""
LIST = "{ webhooks(includeDeleted: true) { id url active } }"
DELIVERIES = """
query ($status: WebhookDeliveryStatus, $webhook: ID, $first: Int!) {
  webhookDeliveries(status: $status, webhookId: $webhook, first: $first) {
    id webhookId eventId status attempts lastError lastStatus deliveredAt
    payload
  }
}
"""


async def test_register_list_and_delete(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    created = data(
        await post(
            engine,
            tenant,
            CREATE,
            {"url": "https://hooks.example.com/t", "scheme": "value", "tier": "VIP"},
        )
    )["createWebhook"]
    assert created["secret"].startswith("whsec_")
    hook = created["webhook"]
    assert (hook["url"], hook["scheme"], hook["tier"], hook["active"]) == (
        "https://hooks.example.com/t",
        "value",
        "VIP",
        True,
    )
    assert hook["createdBy"] == "test"
    listed = data(await post(engine, tenant, LIST))["webhooks"]
    assert listed == [{"id": hook["id"], "url": "https://hooks.example.com/t", "active": True}]
    assert "secret" not in str(listed)

    delete = "mutation ($id: ID!) { deleteWebhook(id: $id) }"
    assert data(await post(engine, tenant, delete, {"id": hook["id"]})) == {"deleteWebhook": True}
    assert data(await post(engine, tenant, delete, {"id": hook["id"]})) == {"deleteWebhook": False}
    assert data(await post(engine, tenant, LIST))["webhooks"][0]["active"] is False
    async with tenant_transaction(engine, tenant) as connection:
        actions = [e.action for e in await audit.entries(connection, tenant)]
    assert actions[:2] == ["webhook.delete", "webhook.create"]


async def test_bad_urls_unknown_schemes_and_plain_http(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    for variables, code, message in (
        ({"url": "http://hooks.example.com"}, "BAD_INPUT", "must start with https://"),
        ({"url": "https://h.example.com", "scheme": "nope"}, "NOT_FOUND", "no published scheme"),
        (
            {"url": "https://h.example.com", "scheme": "value", "tier": "Gold"},
            "NOT_FOUND",
            "has no tier 'Gold'",
        ),
    ):
        result = await post(engine, tenant, CREATE, variables)
        assert codes(result) == [code]
        assert message in result["errors"][0]["message"]
    allowed = Settings(webhook_allow_http=True, webhook_allow_private=True)
    result = await post(engine, tenant, CREATE, {"url": "http://127.0.0.1:9/x"}, settings=allowed)
    assert data(result)["createWebhook"]["webhook"]["url"] == "http://127.0.0.1:9/x"


async def test_only_admins_manage_webhooks(engine: AsyncEngine, tenant: str) -> None:
    for role in (Role.viewer, Role.analyst, Role.ingest):
        result = await post(engine, tenant, CREATE, {"url": "https://h.example.com"}, role=role)
        assert codes(result) == ["FORBIDDEN"]
        assert codes(await post(engine, tenant, LIST, role=role)) == ["FORBIDDEN"]


async def test_deliveries_are_listed_and_dead_ones_replayed(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    created = data(await post(engine, tenant, CREATE, {"url": "https://hooks.example.com/t"}))
    hook = created["createWebhook"]["webhook"]["id"]
    await load(
        engine, tenant, [order("o9", "bob", 1, "9000")], after_load=evaluation.refresh_affected
    )
    variables = {"status": "PENDING", "webhook": hook, "first": 10}
    (pending,) = data(await post(engine, tenant, DELIVERIES, variables))["webhookDeliveries"]
    assert pending["status"] == "PENDING" and pending["attempts"] == 0
    payload = pending["payload"]
    assert (payload["customer"], payload["from"], payload["to"]) == ("bob", "Active", "VIP")
    assert payload["id"] == pending["eventId"] and payload["type"] == "tier.changed"

    replay = "mutation ($id: ID!) { replayWebhookDelivery(id: $id) { status attempts } }"
    result = await post(engine, tenant, replay, {"id": pending["id"]})
    assert codes(result) == ["BAD_INPUT"] and "only dead ones" in result["errors"][0]["message"]
    assert codes(await post(engine, tenant, replay, {"id": MADE_UP})) == ["NOT_FOUND"]
    numeric = await post(engine, tenant, replay, {"id": "123456789"})  # not an id of ours
    assert codes(numeric) == ["BAD_INPUT"] and "`id`" in numeric["errors"][0]["message"]

    async with engine.begin() as connection:  # as if it had run out of attempts
        await connection.execute(
            text(
                "UPDATE webhook_deliveries SET status = 'dead', attempts = 15,"
                " last_error = 'HTTP 500: down', last_status = 500 WHERE tenant_id = :t"
            ),
            {"t": tenant},
        )
    (dead,) = data(await post(engine, tenant, DELIVERIES, {**variables, "status": "DEAD"}))[
        "webhookDeliveries"
    ]
    assert (dead["lastError"], dead["lastStatus"]) == ("HTTP 500: down", 500)
    result = await post(engine, tenant, replay, {"id": pending["id"]})
    assert data(result)["replayWebhookDelivery"] == {"status": "PENDING", "attempts": 0}

    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE webhook_deliveries SET status = 'dead' WHERE tenant_id = :t"),
            {"t": tenant},
        )
    replay_all = "mutation ($id: ID!) { replayDeadDeliveries(webhookId: $id) }"
    assert data(await post(engine, tenant, replay_all, {"id": hook})) == {"replayDeadDeliveries": 1}
    assert codes(await post(engine, tenant, replay_all, {"id": MADE_UP})) == ["NOT_FOUND"]
    async with engine.begin() as connection:  # leave nothing for another test's dispatcher
        await connection.execute(
            text("UPDATE webhook_deliveries SET status = 'dead' WHERE tenant_id = :t"),
            {"t": tenant},
        )
