from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.config import Settings
from service.db.database import create_engine
from tests.api.support import codes, data, post

DEEP = """{ customer(id: "a") { history { customer { history { customer { history {
  customer { id } } } } } } } }"""


async def test_a_too_deep_query_is_refused(engine: AsyncEngine, tenant: str) -> None:
    result = await post(engine, tenant, DEEP, settings=Settings(max_query_depth=4))
    assert codes(result) == ["LIMIT_EXCEEDED"]
    assert "exceeds maximum operation depth of 4" in result["errors"][0]["message"]
    assert "data" not in result or result["data"] is None


async def test_too_many_tokens_aliases_or_operations_are_refused(
    engine: AsyncEngine, tenant: str
) -> None:
    fields = " ".join(f"m{i}: metrics {{ name }}" for i in range(5))
    tight = Settings(max_query_tokens=20, max_aliases=3, max_operations=1)
    tokens = await post(engine, tenant, "{ " + fields + " }", settings=tight)
    assert codes(tokens) == ["LIMIT_EXCEEDED"]
    aliases = await post(engine, tenant, "{ " + fields + " }", settings=Settings(max_aliases=3))
    assert codes(aliases) == ["LIMIT_EXCEEDED"]
    assert aliases["errors"][0]["message"] == "5 aliases found. Allowed: 3"
    two = "query A { metrics { name } } query B { schemes { key } }"
    operations = await post(engine, tenant, two, settings=tight, operation="A")
    assert codes(operations) == ["LIMIT_EXCEEDED"]
    assert data(await post(engine, tenant, two, operation="A"))["metrics"]


async def test_introspection_can_be_turned_off(engine: AsyncEngine, tenant: str) -> None:
    query = "{ __schema { queryType { name } } }"
    assert data(await post(engine, tenant, query)) == {"__schema": {"queryType": {"name": "Query"}}}
    refused = await post(engine, tenant, query, settings=Settings(introspection=False))
    assert refused["errors"] and not refused.get("data")


@pytest.mark.parametrize("graphiql", [True, False])
async def test_graphiql_is_served_to_browsers_unless_turned_off(
    engine: AsyncEngine, graphiql: bool
) -> None:
    app = create_app(engine, settings=Settings(graphiql=graphiql))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
    if graphiql:
        assert response.status_code == 200 and "graphiql" in response.text.lower()
    else:
        assert response.status_code == 404


async def test_with_authentication_off_a_bad_tenant_header_is_a_bad_request(
    engine: AsyncEngine,
) -> None:
    app = create_app(engine, settings=Settings(auth_required=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        response = await client.post(
            "/graphql", json={"query": "{ schemes { key } }"}, headers={"X-Tierwise-Tenant": "a b"}
        )
    assert response.status_code == 400


async def test_unexpected_errors_are_masked_for_clients_and_logged_in_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = create_engine(
        URL.create("postgresql+asyncpg", "nobody", host="127.0.0.1", port=1)
    )
    with caplog.at_level(logging.ERROR, logger="service.api.errors"):
        result = await post(unreachable, "t", "{ schemes { key } }")
    await unreachable.dispose()
    assert result["errors"][0]["message"] == "Unexpected error."
    assert codes(result) == ["INTERNAL"]
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is not None
