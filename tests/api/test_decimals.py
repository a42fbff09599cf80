"""One `Decimal` scalar: money, averages and shares written in one normalised string form,
and numbers sent as JSON (amounts, attribute values) read digit for digit, never through a
binary float: not in the HTTP body, not in the document's literals."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.scalars import parse_value, serialize
from service.app import create_app
from tests.api.support import bearer, data, post, shop, with_secret

UPSERT = """mutation ($customers: [CustomerInput!]!) {
  upsertCustomers(customers: $customers) { inserted rejected errors { message } }
}"""
ORDERS = """mutation ($orders: [OrderInput!]!) {
  recordOrders(orders: $orders) { inserted rejected errors { field message } }
}"""


async def raw_post(engine: AsyncEngine, tenant: str, body: str) -> dict[str, Any]:
    """A request whose JSON body is exactly ``body`` (httpx's json= would write floats)."""
    app = create_app(engine, settings=with_secret(None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        response = await client.post(
            "/graphql",
            content=body.encode(),
            headers={**bearer(tenant), "content-type": "application/json"},
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return result


async def test_json_numbers_in_a_request_body_are_exact(engine: AsyncEngine, tenant: str) -> None:
    customers = (
        '[{"id": "J1", "attributes": {"ltv": 1234567890123.4567,'
        ' "ext_id": 12345678901234567890, "rate": 0.1}}]'
    )
    body = f'{{"query": {json.dumps(UPSERT)}, "variables": {{"customers": {customers}}}}}'
    assert data(await raw_post(engine, tenant, body))["upsertCustomers"]["inserted"] == 1
    orders = (
        '[{"id": "o1", "customerId": "J1", "orderedAt": "2026-01-01T00:00:00Z",'
        ' "amount": 19.990000}, {"id": "o2", "customerId": "J1",'
        ' "orderedAt": "2026-01-02T00:00:00Z", "amount": 99999999999999.9999}]'
    )
    body = f'{{"query": {json.dumps(ORDERS)}, "variables": {{"orders": {orders}}}}}'
    result = data(await raw_post(engine, tenant, body))["recordOrders"]
    assert (result["inserted"], result["rejected"]) == (2, 0), result
    async with engine.connect() as connection:
        stored = (
            await connection.execute(
                text(
                    "SELECT c.attributes->>'ltv', c.attributes->>'ext_id', c.attributes->>'rate',"
                    " array_agg(o.amount::text ORDER BY o.external_id)"
                    " FROM customers c JOIN orders o"
                    " ON o.tenant_id = c.tenant_id AND o.customer_id = c.id"
                    " WHERE c.tenant_id = :t GROUP BY c.tenant_id, c.id"
                ),
                {"t": tenant},
            )
        ).one()
    assert tuple(stored) == (
        "1234567890123.4567",
        "12345678901234567890",
        "0.1",
        ["19.9900", "99999999999999.9999"],
    )


async def test_decimal_literals_in_the_document_are_exact(engine: AsyncEngine, tenant: str) -> None:
    mutation = """mutation { recordOrders(orders: [{id: "o1", customerId: "c1",
      orderedAt: "2026-01-01T00:00:00Z", amount: 99999999999999.9999}]) { inserted } }"""
    assert data(await post(engine, tenant, mutation))["recordOrders"]["inserted"] == 1
    query = '{ customer(id: "c1") { metrics { monetary averageOrderValue } } }'
    metrics = data(await post(engine, tenant, query))["customer"]["metrics"]
    assert metrics == {
        "monetary": "99999999999999.9999",
        "averageOrderValue": "99999999999999.9999",
    }


async def test_money_and_shares_have_one_normalised_form(engine: AsyncEngine, tenant: str) -> None:
    """`averageOrderValue` was "2750.0000000000000000", shares were floats."""
    await shop(engine, tenant)
    query = """{ customer(id: "ann") { metrics { monetary averageOrderValue } }
      segments { tier revenue customerShare revenueShare averageRevenue } }"""
    found = data(await post(engine, tenant, query))
    assert found["customer"]["metrics"] == {"monetary": "5500", "averageOrderValue": "2750"}
    vip = next(s for s in found["segments"] if s["tier"] == "VIP")
    assert vip == {
        "tier": "VIP",
        "revenue": "5500",
        "customerShare": "0.333333",
        "revenueShare": "0.975177",
        "averageRevenue": "5500",
    }


def test_the_scalar_reads_and_writes() -> None:
    assert [serialize(Decimal(v)) for v in ("1110.4441000000000000", "1.2E+3", "0E-4")] == [
        "1110.4441",
        "1200",
        "0",
    ]
    assert parse_value("19.990") == Decimal("19.990")
    assert parse_value(Decimal("0.1")) == Decimal("0.1")
    for bad in ("NaN", "Infinity", "ten", True, None, [1]):
        try:
            parse_value(bad)
        except Exception as error:  # graphql-core turns it into a BAD_INPUT error
            assert "Decimal cannot represent" in str(error)
        else:
            raise AssertionError(f"{bad!r} was accepted")


async def test_attributes_come_back_exact(engine: AsyncEngine, tenant: str) -> None:
    body = (
        f'{{"query": {json.dumps(UPSERT)}, "variables": {{"customers": [{{"id": "J2",'
        ' "attributes": {"ltv": 1234567890123.4567, "n": 3, "r": 0.1}}]}}'
    )
    assert data(await raw_post(engine, tenant, body))["upsertCustomers"]["inserted"] == 1
    query = json.dumps('{ customer(id: "J2") { attributes } }')
    found = await raw_post(engine, tenant, f'{{"query": {query}}}')
    assert data(found)["customer"]["attributes"] == {
        "ltv": Decimal("1234567890123.4567"),
        "n": 3,
        "r": Decimal("0.1"),
    }


async def test_strategy_parameters_come_back_exact(engine: AsyncEngine, tenant: str) -> None:
    """Strategy parameters are stored as jsonb: read back by `strategies`, on the customer
    card and in the audit log, their numbers keep every digit (they came back as floats)."""
    await shop(engine, tenant)
    save = json.dumps("mutation ($s: StrategyInput!) { saveStrategy(strategy: $s) { parameters } }")
    strategy = (
        '{"scheme": "value", "tier": "VIP", "name": "Exact", "channel": "email", "priority": 0,'
        ' "parameters": {"discount": 0.1, "cap": 1234567890123.4567, "n": 3}}'
    )
    saved = await raw_post(engine, tenant, f'{{"query": {save}, "variables": {{"s": {strategy}}}}}')
    exact = {"discount": Decimal("0.1"), "cap": Decimal("1234567890123.4567"), "n": 3}
    assert data(saved)["saveStrategy"]["parameters"] == exact
    query = json.dumps(
        '{ strategies(scheme: "value", tier: "VIP") { name parameters }'
        ' customer(id: "ann") { strategies { name parameters } }'
        ' auditLog(action: "strategy.create", first: 1) { after } }'
    )
    found = data(await raw_post(engine, tenant, f'{{"query": {query}}}'))
    listed = {s["name"]: s["parameters"] for s in found["strategies"]}
    on_card = {s["name"]: s["parameters"] for s in found["customer"]["strategies"]}
    assert listed["Exact"] == exact
    assert on_card["Exact"] == exact
    assert found["auditLog"][0]["after"]["parameters"] == exact
