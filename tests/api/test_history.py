"""A customer's history is bounded: the newest `last` changes, oldest first, cut off in the
database for every customer of a page in one statement."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.support import codes, data, post, shop

HISTORY = """query ($id: ID!, $scheme: String, $last: Int!) {
  customer(id: $id) { history(scheme: $scheme, last: $last) { scheme toTier } }
}"""
PAGE = """{ customers(first: 10) { edges { node { id history(last: 2) { toTier } } } } }"""


async def _changes(engine: AsyncEngine, tenant: str, customer: str, tiers: list[str]) -> None:
    """Transitions of `customer` in scheme `other`, one a day, to each of ``tiers`` in turn."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with engine.begin() as connection:
        for day, tier in enumerate(tiers):
            await connection.execute(
                text(
                    "INSERT INTO transitions (tenant_id, scheme_key, number, customer_id, "
                    "to_tier, at, version, trigger) SELECT :t, 'other', :n, id, :tier, :at, 1, "
                    "'test' FROM customers WHERE tenant_id = :t AND external_id = :c"
                ),
                {
                    "t": tenant,
                    "n": day + 1,
                    "c": customer,
                    "tier": tier,
                    "at": start + dt.timedelta(days=day),
                },
            )


async def test_history_is_the_newest_changes_oldest_first(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    await _changes(engine, tenant, "ann", [f"T{n}" for n in range(8)])

    def tiers(result: dict[str, object]) -> list[tuple[str, str]]:
        history = data(result)["customer"]["history"]  # type: ignore[index]
        return [(h["scheme"], h["toTier"]) for h in history]

    every = tiers(await post(engine, tenant, HISTORY, {"id": "ann", "last": 50}))
    assert every == [("value", "VIP")] + [("other", f"T{n}") for n in range(8)]
    assert tiers(await post(engine, tenant, HISTORY, {"id": "ann", "last": 2})) == [
        ("other", "T6"),
        ("other", "T7"),
    ]
    one = await post(engine, tenant, HISTORY, {"id": "ann", "scheme": "value", "last": 1})
    assert tiers(one) == [("value", "VIP")]
    assert tiers(await post(engine, tenant, HISTORY, {"id": "ann", "last": 0})) == []


async def test_a_page_cuts_each_customers_history(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    await _changes(engine, tenant, "bob", ["B1", "B2", "B3"])
    page = data(await post(engine, tenant, PAGE))["customers"]["edges"]
    histories = {edge["node"]["id"]: edge["node"]["history"] for edge in page}
    assert histories["bob"] == [{"toTier": "B2"}, {"toTier": "B3"}]
    assert histories["ann"] == [{"toTier": "VIP"}]


async def test_last_is_capped(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    for last in (-1, 101):
        result = await post(engine, tenant, HISTORY, {"id": "ann", "last": last})
        assert codes(result) == ["BAD_INPUT"]
        assert "`last` must be between 0 and 100" in result["errors"][0]["message"]
