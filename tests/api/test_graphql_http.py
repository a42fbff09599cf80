"""GraphQL over HTTP conformance: the `graphql-http` package's audit (npm, pinned in
tests/package.json; `npm ci --prefix tests` installs it) against the app under uvicorn, with a
viewer's token. Every MUST holds, and so does every SHOULD: a client that accepts
`application/graphql-response+json` gets it, with 400 and no `data` for a document that does
not parse or validate."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from service.api.http import GRAPHQL_RESPONSE
from service.config import Settings
from tests.api.support import bearer, request, serving, shop, token

TESTS = Path(__file__).resolve().parents[1]
AUDIT = Path(__file__).with_name("graphql_http_audit.mjs")


@pytest.mark.skipif(
    shutil.which("node") is None,
    reason="the graphql-http audit runs on Node.js: install node, then `npm ci --prefix tests` "
    "(.ci/run does both)",
)
async def test_the_graphql_over_http_audit_passes(engine: AsyncEngine, tenant: str) -> None:
    assert (TESTS / "node_modules" / "graphql-http").is_dir(), (
        "the audit's package is not installed: run `npm ci --prefix tests`"
    )
    # The audit sends its requests as fast as it can on one token: past the token's burst
    # they were refused with 429 (RATE_LIMITED), which is not what it audits.
    settings = Settings(webhook_poll_interval=0, rate_limit_burst=1_000)
    async with serving(engine, settings) as base:
        audit = await asyncio.create_subprocess_exec(
            "node",
            str(AUDIT),
            f"{base}/graphql",
            token(tenant, Role.viewer),
            cwd=TESTS,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(audit.communicate(), 120)
    assert audit.returncode == 0, err.decode()
    results = json.loads(out)
    assert len(results) > 50
    failed = [f"{r['status']}: {r['name']}: {r['reason']}" for r in results if r["status"] != "ok"]
    assert failed == [], "\n".join(failed)


async def test_request_errors_are_400_without_data_for_graphql_response_json(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    modern = {**bearer(tenant), "Accept": GRAPHQL_RESPONSE}
    cases = {
        "{ customers { ": 400,  # does not parse
        "{ customers { nothing } }": 400,  # does not validate
        '{ customers(after: "forged") { totalCount } }': 200,  # a field's error: executed
        "{ metrics { name } }": 200,
    }
    for query, status in cases.items():
        response = await request(engine, {"query": query}, modern)
        assert response.status_code == status, query
        assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
        assert ("data" in response.json()) is (status == 200), query
        legacy = await request(engine, {"query": query}, bearer(tenant))
        assert legacy.status_code == 200
        assert legacy.headers["content-type"] == "application/json"
        assert "data" in legacy.json()
