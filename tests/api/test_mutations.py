from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.data.ingest import import_rates
from tests.api.support import codes, data, post
from tests.support import VALUE, day

UPSERT = """mutation ($customers: [CustomerInput!]!) {
  upsertCustomers(customers: $customers) {
    received inserted updated unchanged rejected errors { row field message }
  }
}"""
ORDERS = """mutation ($orders: [OrderInput!]!) {
  recordOrders(orders: $orders) {
    received inserted unchanged rejected customersCreated tierChanges
    errors { row field message }
  }
}"""
PUBLISH = """mutation ($key: String!, $source: String!) {
  publishScheme(key: $key, source: $source) {
    changed scheme { key version tiers } warnings { message } runs { scheme changed }
  }
}"""
TIERS = """query ($id: ID!) { customer(id: $id) { tiers { scheme tier } } }"""


async def test_upsert_customers_writes_the_valid_rows_and_reports_the_bad_ones(
    engine: AsyncEngine, tenant: str
) -> None:
    rows = [
        {"id": "ann", "name": "Ann", "age": 41, "attributes": {"plan": "gold"}},
        {"id": "bob", "age": 200},
        {"id": "cyd", "attributes": [1, 2]},
    ]
    result = data(await post(engine, tenant, UPSERT, {"customers": rows}))["upsertCustomers"]
    assert (result["received"], result["inserted"], result["rejected"]) == (3, 1, 2)
    assert [(e["row"], e["field"]) for e in result["errors"]] == [(1, "age"), (2, "attributes")]
    assert "plausible age" in result["errors"][0]["message"]
    card = data(await post(engine, tenant, '{ customer(id: "ann") { name attributes } }'))
    assert card["customer"] == {"name": "Ann", "attributes": {"plan": "gold"}}
    assert data(await post(engine, tenant, '{ customer(id: "bob") { id } }'))["customer"] is None
    again = data(await post(engine, tenant, UPSERT, {"customers": rows[:1]}))["upsertCustomers"]
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 1)


async def test_recorded_orders_move_tiers_at_once(engine: AsyncEngine, tenant: str) -> None:
    published = data(await post(engine, tenant, PUBLISH, {"key": "value", "source": VALUE}))
    assert published["publishScheme"]["changed"] is True
    orders = [
        {"id": "o1", "customerId": "ann", "orderedAt": day(3), "amount": "3000"},
        {"id": "o2", "customerId": "ann", "orderedAt": day(2), "amount": "2500.5"},
        {"id": "o3", "customerId": "bob", "orderedAt": day(2), "amount": "1.00001"},
    ]
    result = data(await post(engine, tenant, ORDERS, {"orders": orders}))["recordOrders"]
    assert (result["inserted"], result["rejected"], result["customersCreated"]) == (2, 1, 1)
    assert result["tierChanges"] == 1
    assert result["errors"][0]["row"] == 2 and result["errors"][0]["field"] == "amount"
    tiers = data(await post(engine, tenant, TIERS, {"id": "ann"}))["customer"]["tiers"]
    assert tiers == [{"scheme": "value", "tier": "VIP"}]
    again = data(await post(engine, tenant, ORDERS, {"orders": orders[:2]}))["recordOrders"]
    assert (again["inserted"], again["unchanged"], again["tierChanges"]) == (0, 2, 0)


async def test_recorded_refunds_and_cancellations_count_as_they_should(
    engine: AsyncEngine, tenant: str
) -> None:
    """A refund (refundOf, its amount given positive) and a cancelled order: the card shows
    one purchase, the net amount and the refund."""
    orders = [
        {"id": "o1", "customerId": "ann", "orderedAt": day(5), "amount": "100"},
        {"id": "o2", "customerId": "ann", "orderedAt": day(4), "amount": "60"},
        {"id": "o2r", "customerId": "ann", "orderedAt": day(3), "amount": "60", "refundOf": "o2"},
        {"id": "o3", "customerId": "ann", "orderedAt": day(2), "amount": "900",
         "status": "CANCELLED"},
    ]  # fmt: skip
    result = data(await post(engine, tenant, ORDERS, {"orders": orders}))["recordOrders"]
    assert (result["inserted"], result["rejected"]) == (4, 0)
    card = data(
        await post(
            engine,
            tenant,
            '{ customer(id: "ann") { metrics { frequency monetary refunds returns recency } } }',
        )
    )["customer"]["metrics"]
    assert card["frequency"] == 1 and card["returns"] == 1 and card["recency"] == 5
    assert Decimal(card["monetary"]) == 100 and Decimal(card["refunds"]) == 60


async def test_recorded_orders_in_another_currency_are_converted(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """recordOrders takes `currency`: converted at the tenant's rate in force on the order's
    date; a row in a currency without a rate is rejected with what is missing."""
    rates = tmp_path / "rates.csv"
    rates.write_text("currency,date,rate\nUSD,2020-01-01,0.9\n", encoding="utf-8")
    await import_rates(engine, tenant, rates)
    orders = [
        {"id": "o1", "customerId": "ann", "orderedAt": day(5), "amount": "100", "currency": "USD"},
        {"id": "o2", "customerId": "ann", "orderedAt": day(4), "amount": "100", "currency": "JPY"},
    ]
    result = data(await post(engine, tenant, ORDERS, {"orders": orders}))["recordOrders"]
    assert (result["inserted"], result["rejected"]) == (1, 1)
    assert result["errors"][0]["field"] == "currency"
    assert "no exchange rate for JPY" in result["errors"][0]["message"]
    card = data(await post(engine, tenant, '{ customer(id: "ann") { metrics { monetary } } }'))
    assert Decimal(card["customer"]["metrics"]["monetary"]) == 90


async def test_too_many_rows_in_one_mutation_are_refused(engine: AsyncEngine, tenant: str) -> None:
    rows = [{"id": f"c{i}"} for i in range(3)]
    result = await post(
        engine, tenant, UPSERT, {"customers": rows}, settings=Settings(max_ingest_rows=2)
    )
    assert codes(result) == ["LIMIT_EXCEEDED"]


async def test_publish_scheme_evaluates_and_is_idempotent(engine: AsyncEngine, tenant: str) -> None:
    orders = [{"id": "o1", "customerId": "ann", "orderedAt": day(3), "amount": "10"}]
    data(await post(engine, tenant, ORDERS, {"orders": orders}))
    first = data(await post(engine, tenant, PUBLISH, {"key": "value", "source": VALUE}))
    assert first["publishScheme"] == {
        "changed": True,
        "scheme": {"key": "value", "version": 1, "tiers": ["VIP", "Active", "Normal"]},
        "warnings": [],
        "runs": [{"scheme": "value", "changed": 1}],
    }
    again = data(await post(engine, tenant, PUBLISH, {"key": "value", "source": VALUE}))
    assert again["publishScheme"]["changed"] is False and again["publishScheme"]["runs"] == []
    bare = "tier Big when monetary > 5\ntier Small otherwise"
    other = data(await post(engine, tenant, PUBLISH, {"key": "size", "source": bare}))
    assert other["publishScheme"]["scheme"]["tiers"] == ["Big", "Small"]
    tiers = data(await post(engine, tenant, TIERS, {"id": "ann"}))["customer"]["tiers"]
    assert tiers == [{"scheme": "size", "tier": "Big"}, {"scheme": "value", "tier": "Active"}]
    bad = await post(engine, tenant, PUBLISH, {"key": "value", "source": "tier A when x > 1"})
    assert codes(bad) == ["BAD_RULE"]
    assert bad["errors"][0]["extensions"]["diagnostics"][0]["line"] == 1
    wrong_key = await post(engine, tenant, PUBLISH, {"key": "other", "source": VALUE})
    assert codes(wrong_key) == ["BAD_INPUT"]


async def test_strategies_are_saved_updated_and_deleted(engine: AsyncEngine, tenant: str) -> None:
    data(await post(engine, tenant, PUBLISH, {"key": "value", "source": VALUE}))
    save = """mutation ($s: StrategyInput!) {
      saveStrategy(strategy: $s) { id name channel priority parameters }
    }"""
    strategy = {"scheme": "value", "tier": "VIP", "name": "Call", "channel": "phone"}
    created = data(await post(engine, tenant, save, {"s": strategy}))["saveStrategy"]
    assert (created["priority"], created["parameters"]) == (100, {})
    changed = {**strategy, "priority": 5, "parameters": {"script": "gold"}}
    updated = data(await post(engine, tenant, save, {"s": changed}))["saveStrategy"]
    assert updated == {**created, "priority": 5, "parameters": {"script": "gold"}}
    listed = data(await post(engine, tenant, '{ strategies(scheme: "value") { id } }'))
    assert listed["strategies"] == [{"id": created["id"]}]
    unknown = await post(engine, tenant, save, {"s": {**strategy, "tier": "Gold"}})
    assert codes(unknown) == ["NOT_FOUND"]
    nameless = await post(engine, tenant, save, {"s": {**strategy, "name": " "}})
    assert codes(nameless) == ["BAD_INPUT"]
    assert nameless["errors"][0]["message"] == "a strategy needs a name and a channel"
    delete = "mutation ($id: ID!) { deleteStrategy(id: $id) }"
    assert data(await post(engine, tenant, delete, {"id": created["id"]})) == {
        "deleteStrategy": True
    }
    assert data(await post(engine, tenant, delete, {"id": created["id"]})) == {
        "deleteStrategy": False
    }


async def test_evaluate_scheme_now(engine: AsyncEngine, tenant: str) -> None:
    query = """mutation ($s: String!) {
      evaluateScheme(scheme: $s) {
        scheme version customerCount changed tiers { tier customerCount }
      }
    }"""
    assert codes(await post(engine, tenant, query, {"s": "value"})) == ["NOT_FOUND"]
    data(await post(engine, tenant, PUBLISH, {"key": "value", "source": VALUE}))
    orders = [{"id": "o1", "customerId": "ann", "orderedAt": day(300), "amount": "10"}]
    data(await post(engine, tenant, ORDERS, {"orders": orders}))
    (run,) = data(await post(engine, tenant, query, {"s": "value"}))["evaluateScheme"]
    assert (run["scheme"], run["version"], run["customerCount"], run["changed"]) == (
        "value",
        1,
        1,
        0,
    )
    assert [t["customerCount"] for t in run["tiers"]] == [0, 0, 1]
