"""Text the database cannot store is the client's error: the probe's NUL character and lone
surrogate gave INTERNAL (the driver failed); now BAD_INPUT, saying where, before anything
runs."""

from __future__ import annotations

import json

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from tests.api.support import bearer, codes, post, shop, with_secret

CARD = "query ($id: ID!) { customer(id: $id) { id } }"
UPSERT = """mutation ($customers: [CustomerInput!]!) {
  upsertCustomers(customers: $customers) { inserted }
}"""
ORDERS = "mutation ($orders: [OrderInput!]!) { recordOrders(orders: $orders) { inserted } }"


async def test_a_nul_character_is_bad_input(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    by_variable = await post(engine, tenant, CARD, {"id": "a\x00b"})
    assert codes(by_variable) == ["BAD_INPUT"]
    assert by_variable["errors"][0]["message"].startswith("variable $id: ")
    literal = await post(engine, tenant, '{ customer(id: "a\\u0000b") { id } }')
    assert codes(literal) == ["BAD_INPUT"]
    assert "line 1, column 16" in literal["errors"][0]["message"]
    order = {"id": "o1", "customerId": "c\x00", "orderedAt": "2026-01-01", "amount": "1"}
    nested = await post(engine, tenant, ORDERS, {"orders": [order]})
    assert codes(nested) == ["BAD_INPUT"]
    assert "variable $orders[0].customerId" in nested["errors"][0]["message"]
    # In a JSON value's keys too (an attribute's name), which went to the driver unseen.
    person = {"id": "c1", "attributes": {"plan": {"a\x00": 1}}}
    keyed = await post(engine, tenant, UPSERT, {"customers": [person]})
    assert codes(keyed) == ["BAD_INPUT"]
    assert "variable $customers[0].attributes.plan.a" in keyed["errors"][0]["message"]


async def test_a_lone_surrogate_is_bad_input(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    # Only a JSON escape can carry one (it is not UTF-8): `json.dumps` writes it so.
    body = json.dumps({"query": CARD, "variables": {"id": "\ud800"}})
    transport = httpx.ASGITransport(app=create_app(engine, settings=with_secret()))
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        response = await client.post(
            "/graphql",
            content=body,
            headers={**bearer(tenant), "Content-Type": "application/json"},
        )
    assert codes(response.json()) == ["BAD_INPUT"]
    # A pair is one character, and fine.
    assert "errors" not in await post(engine, tenant, CARD, {"id": "\U0001f600"})
