"""API keys through GraphQL: an admin creates one (shown once), it authenticates as its role,
it is listed and audited without its secret, and once revoked it is refused."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from tests.api.support import codes, data, post, request, shop

CREATE = 'mutation { createApiKey(role: VIEWER, name: "dashboard") { key apiKey { id role } } }'
LIST = "{ apiKeys { id name role createdBy revokedAt } }"
REVOKE = "mutation ($id: String!) { revokeApiKey(id: $id) { id revokedAt } }"
SEGMENTS = {"query": "{ segments { tier } }"}
# Verified keys are cached; without the cache a revocation takes effect at once.
UNCACHED = Settings(api_key_cache_seconds=0)


async def test_an_admin_creates_lists_and_revokes_keys(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    created = data(await post(engine, tenant, CREATE))["createApiKey"]
    key, key_id = created["key"], created["apiKey"]["id"]
    assert created["apiKey"]["role"] == "VIEWER" and key.startswith(f"tw_{tenant}_{key_id}_")

    as_key = {"Authorization": f"Bearer {key}"}
    answer = await request(engine, SEGMENTS, as_key, settings=UNCACHED)
    assert answer.status_code == 200 and data(answer.json())["segments"]
    publish = {"query": 'mutation { evaluateScheme(scheme: "value") { changed } }'}
    assert codes((await request(engine, publish, as_key, settings=UNCACHED)).json()) == [
        "FORBIDDEN"
    ]

    (listed,) = data(await post(engine, tenant, LIST))["apiKeys"]
    assert (listed["id"], listed["name"], listed["revokedAt"]) == (key_id, "dashboard", None)
    revoked = data(await post(engine, tenant, REVOKE, {"id": key_id}))["revokeApiKey"]
    assert revoked["revokedAt"] is not None
    assert (await request(engine, SEGMENTS, as_key, settings=UNCACHED)).status_code == 401

    audit = data(await post(engine, tenant, "{ auditLog(action: null) { action target after } }"))
    entries = [e for e in audit["auditLog"] if e["action"].startswith("key.")]
    assert [e["action"] for e in entries] == ["key.revoke", "key.create"]
    assert all(key.rsplit("_", 1)[1] not in repr(e) for e in entries)


async def test_unknown_roles_and_keys_are_clear_errors(engine: AsyncEngine, tenant: str) -> None:
    # A role is a value of the `Role` enum: GraphQL refuses any other before anything runs.
    bad_role = await post(engine, tenant, "mutation { createApiKey(role: ROOT) { key } }")
    assert bad_role["data"] is None
    assert bad_role["errors"][0]["message"] == "Value 'ROOT' does not exist in 'Role' enum."
    missing = await post(engine, tenant, REVOKE, {"id": "0123456789abcdef"})
    assert codes(missing) == ["NOT_FOUND"]
