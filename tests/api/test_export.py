"""`GET /export` and `tierwise export`: every member of a tier (or of a `where`) as CSV, with
chosen metric columns, streamed in keyset batches; refused as GraphQL refuses."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from service.app import create_app
from service.engine.members import prepare_export
from tests.api.support import bearer, data, post, shop, with_secret
from tests.support import tierwise

MEMBERS = """query ($scheme: String, $tier: String, $where: String) {
  customers(scheme: $scheme, tier: $tier, where: $where) {
    edges { node { id metrics { monetary recency } } } } }"""


async def _get(
    engine: AsyncEngine, tenant: str, params: list[tuple[str, str]], role: Role | None = Role.viewer
) -> httpx.Response:
    app = create_app(engine, settings=with_secret())
    headers = bearer(tenant, role) if role is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        return await client.get("/export", params=params, headers=headers)


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_export_gives_exactly_the_tiers_members_with_their_metrics(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    for tier in ("VIP", "Active", "Normal"):
        response = await _get(
            engine,
            tenant,
            [("scheme", "value"), ("tier", tier), ("metric", "monetary"), ("metric", "recency")],
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert f'filename="value-{tier}.csv"' in response.headers["content-disposition"]
        header, *rows = _rows(response.text)
        assert header == ["customer_id", "monetary", "recency"]
        members = data(await post(engine, tenant, MEMBERS, {"scheme": "value", "tier": tier}))
        assert rows == [
            [
                edge["node"]["id"],
                edge["node"]["metrics"]["monetary"],
                str(edge["node"]["metrics"]["recency"]),
            ]
            for edge in members["customers"]["edges"]
        ]
        assert rows, f"{tier} has members in the shop"


async def test_export_of_a_where_alone_and_within_a_scheme(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    where = 'region = "east"'
    response = await _get(engine, tenant, [("where", where), ("metric", "region")])
    assert _rows(response.text) == [["customer_id", "region"], ["ann", "east"], ["cyd", "east"]]
    response = await _get(engine, tenant, [("scheme", "value"), ("where", "recency > 90 days")])
    assert _rows(response.text) == [["customer_id"], ["cyd"]]


async def test_an_attribute_holding_json_is_exported_as_json(
    engine: AsyncEngine, tenant: str
) -> None:
    """An untyped attribute that holds an object is written as JSON with its numbers exact
    (it was Python's repr: `{'limit': Decimal('1.5')}`)."""
    await shop(engine, tenant)
    person = {"id": "ann", "attributes": {"plan": {"limit": 1.5, "tags": ["a"]}}}
    upsert = "mutation ($c: [CustomerInput!]!) { upsertCustomers(customers: $c) { updated } }"
    assert data(await post(engine, tenant, upsert, {"c": [person]}))
    params = [("where", "attributes.plan is not null"), ("metric", "attributes.plan")]
    response = await _get(engine, tenant, params)
    header, [customer, cell] = _rows(response.text)
    assert (header, customer) == (["customer_id", "attributes.plan"], "ann")
    assert json.loads(cell, parse_float=Decimal) == {"limit": Decimal("1.5"), "tags": ["a"]}


async def test_export_streams_in_batches_and_loses_no_one(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    prepared = await prepare_export(
        engine, tenant, scheme="value", tier=None, where=None, metrics=["monetary(365 days)"]
    )
    for size in (1, 2, 3, 100):
        batches = [b async for b in dataclasses.replace(prepared, batch=size).rows()]
        assert [len(b) for b in batches][:-1] == [size] * (len(batches) - 1)
        assert [row[0] for b in batches for row in b] == ["ann", "bob", "cyd"]
        assert [b for b in batches if not b] == []


async def test_export_is_refused_as_graphql_refuses(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)

    async def refusal(params: list[tuple[str, str]], role: Role | None = Role.viewer) -> object:
        response = await _get(engine, tenant, params, role)
        body = response.json()
        return response.status_code, body["errors"][0]["extensions"]["code"]

    assert await refusal([("scheme", "value")], None) == (401, "UNAUTHENTICATED")
    assert await refusal([("scheme", "value")], Role.ingest) == (403, "FORBIDDEN")
    assert await refusal([("scheme", "nope")]) == (404, "NOT_FOUND")
    assert await refusal([("scheme", "value"), ("tier", "Gold")]) == (404, "NOT_FOUND")
    assert await refusal([("tier", "VIP")]) == (400, "BAD_INPUT")
    assert await refusal([]) == (400, "BAD_INPUT")
    assert await refusal([("where", "monetry > 5")]) == (400, "BAD_RULE")
    assert await refusal([("scheme", "value"), ("metric", "frequncy")]) == (400, "BAD_RULE")
    # A column is one metric; arithmetic of the rule language is not.
    assert await refusal([("scheme", "value"), ("metric", "monetary * 2")]) == (400, "BAD_INPUT")
    response = await _get(engine, tenant, [("where", "monetry > 5")])
    assert "did you mean `monetary`" in response.json()["errors"][0]["message"]


async def test_tierwise_export_writes_the_same_file(
    engine: AsyncEngine, database: URL, tenant: str, tmp_path: Path
) -> None:
    await shop(engine, tenant)
    target = tmp_path / "vip.csv"
    args = ("export", "--scheme", "value", "--tier", "VIP", "--metric", "monetary")
    result = tierwise(database, *args, str(target), "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    assert "1 customers written to" in result.stderr
    served = await _get(
        engine, tenant, [("scheme", "value"), ("tier", "VIP"), ("metric", "monetary")]
    )
    assert target.read_bytes() == served.content
    assert _rows(target.read_text()) == [["customer_id", "monetary"], ["ann", "5500"]]

    bad = tierwise(database, "export", "--where", "monetry > 1", str(target), "--tenant", tenant)
    assert bad.returncode == 1
    assert "did you mean `monetary`" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert _rows(target.read_text())[1] == ["ann", "5500"], "a failed export keeps the file"
