"""The audit log through GraphQL: changes made through the API carry the token's subject, role,
client address and request id; admins read them, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role, issue_token
from tests.api.support import TEST_SECRET, bearer, codes, data, request, shop
from tests.support import VALUE

PUBLISH = 'mutation ($s: String!) { publishScheme(key: "value", source: $s) { changed } }'
SAVE = """mutation ($s: StrategyInput!) { saveStrategy(strategy: $s) { id } }"""
LOG = """query ($action: String, $first: Int, $before: ID) {
  auditLog(action: $action, first: $first, before: $before) {
    id action target actor role source requestId before after
  }
}"""


async def _as(
    engine: AsyncEngine,
    tenant: str,
    role: Role,
    subject: str,
    query: str,
    variables: dict[str, Any],
) -> dict[str, Any]:
    headers = {
        "Authorization": f"Bearer {issue_token(TEST_SECRET, tenant, role, subject)}",
        "X-Request-ID": f"req-{subject}",
    }
    response = await request(engine, {"query": query, "variables": variables}, headers)
    result: dict[str, Any] = response.json()
    return result


async def test_api_changes_are_audited_with_who_and_where(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    changed = VALUE.replace("5000", "7000")
    await _as(engine, tenant, Role.analyst, "ana", PUBLISH, {"s": changed})
    strategy = {"scheme": "value", "tier": "VIP", "name": "Gift", "channel": "post"}
    await _as(engine, tenant, Role.analyst, "ana", SAVE, {"s": strategy})
    entries = data(await _as(engine, tenant, Role.admin, "root", LOG, {"first": 2}))["auditLog"]
    saved, published = entries
    assert (saved["action"], saved["target"], saved["before"]) == (
        "strategy.create",
        "value/VIP/Gift",
        None,
    )
    assert saved["after"]["channel"] == "post"
    assert published["action"] == "scheme.publish" and published["target"] == "value"
    assert "5000" in published["before"]["source"] and "7000" in published["after"]["source"]
    for entry in entries:
        assert (entry["actor"], entry["role"], entry["requestId"]) == ("ana", "ANALYST", "req-ana")
        assert entry["source"]  # the client's address
    older = data(await _as(engine, tenant, Role.admin, "root", LOG, {"before": published["id"]}))[
        "auditLog"
    ]
    # Ids are opaque (no order to read); `before` pages on to exactly the older entries.
    every = data(await _as(engine, tenant, Role.admin, "root", LOG, {"first": 100}))["auditLog"]
    position = [e["id"] for e in every].index(published["id"])
    assert older and older == every[position + 1 : position + 1 + len(older)]
    only = data(await _as(engine, tenant, Role.admin, "root", LOG, {"action": "scheme.publish"}))[
        "auditLog"
    ]
    assert {e["action"] for e in only} == {"scheme.publish"}


async def test_the_audit_log_and_the_logs_carry_the_same_request_id(
    engine: AsyncEngine, tenant: str
) -> None:
    """A gateway's X-Request-ID that the logs refuse (spaces, too long) was still written raw
    into the audit log, while the log lines and the response carried a fresh one."""
    await shop(engine, tenant)
    headers = {**bearer(tenant, Role.analyst), "X-Request-ID": "not a usable id"}
    body = {"query": PUBLISH, "variables": {"s": VALUE.replace("5000", "7000")}}
    response = await request(engine, body, headers)
    assert "errors" not in response.json()
    given = response.headers["x-request-id"]
    assert given != "not a usable id"
    (entry,) = data(await _as(engine, tenant, Role.admin, "root", LOG, {"first": 1}))["auditLog"]
    assert entry["requestId"] == given


async def test_only_admins_read_the_audit_log(engine: AsyncEngine, tenant: str) -> None:
    for role in (Role.viewer, Role.analyst, Role.ingest):
        assert codes(await _as(engine, tenant, role, "x", LOG, {})) == ["FORBIDDEN"]
