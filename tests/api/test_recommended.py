"""A customer's recommended strategies: each once, even when two schemes' tiers have it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.data.ingest import import_rows
from service.data.records import Kind
from service.engine import evaluation, schemes, strategies
from tests.api.support import data, post, shop

CARD = '{ customer(id: "bob") { strategies { name channel scheme priority } } }'


async def test_a_strategy_in_two_schemes_is_recommended_once(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)  # bob is Active in `value`: Promotions by email, priority 50
    async with engine.begin() as connection:
        await schemes.publish(connection, tenant, "scheme other {\n  tier Everyone otherwise\n}\n")
    await evaluation.evaluate(engine, tenant, "other")
    async with engine.begin() as connection:
        for name, channel, priority in (
            ("Promotions", "email", 20),  # the same as value's Active: once, at 20
            ("Call", "phone", 60),
        ):
            await strategies.save(
                connection,
                tenant,
                scheme="other",
                tier="Everyone",
                name=name,
                channel=channel,
                priority=priority,
            )
    found = data(await post(engine, tenant, CARD))["customer"]["strategies"]
    assert found == [
        {"name": "Promotions", "channel": "email", "scheme": "other", "priority": 20},
        {"name": "Call", "channel": "phone", "scheme": "other", "priority": 60},
    ]


FIELDS = "tiers { scheme tier since version } strategies { id name channel priority parameters }"


async def test_the_card_reads_what_the_loaders_read(engine: AsyncEngine, tenant: str) -> None:
    """`customer(id)` reads its tiers and strategies with the customer, in one statement
    (service.api.loaders.CUSTOMER_CARDS, one key or several); a page of customers reads them
    through the tiers and strategies loaders. Both give the same, parameters included, and a
    customer with no tier has none of either."""
    await shop(engine, tenant)
    async with engine.begin() as connection:
        await strategies.save(
            connection,
            tenant,
            scheme="value",
            tier="VIP",
            name="Gift",
            channel="post",
            priority=30,
            parameters={"value": 25.5, "note": "ß", "nested": {"list": [1, 2]}},
        )
        await strategies.save(
            connection, tenant, scheme="value", tier="VIP", name="Old", channel="x", active=False
        )
    paged = data(
        await post(engine, tenant, f"{{ customers {{ edges {{ node {{ id {FIELDS} }} }} }} }}")
    )
    by_loaders = {edge["node"].pop("id"): edge["node"] for edge in paged["customers"]["edges"]}
    assert [s["name"] for s in by_loaders["ann"]["strategies"]] == [
        "Personal manager",
        "Exclusive offers",
        "Gift",
    ]
    for name in ("ann", "bob", "cyd"):
        one = data(await post(engine, tenant, f'{{ customer(id: "{name}") {{ {FIELDS} }} }}'))
        assert one["customer"] == by_loaders[name], name
    several = data(
        await post(
            engine,
            tenant,
            f'{{ a: customer(id: "ann") {{ {FIELDS} }} c: customer(id: "cyd") {{ {FIELDS} }} '
            f'n: customer(id: "nobody") {{ {FIELDS} }} }}',
        )
    )
    assert several == {"a": by_loaders["ann"], "c": by_loaders["cyd"], "n": None}
    await import_rows(
        engine, Kind.customers, tenant, enumerate([{"customer_id": "dan"}]), source="test"
    )
    alone = data(await post(engine, tenant, f'{{ customer(id: "dan") {{ {FIELDS} }} }}'))
    assert alone == {"customer": {"tiers": [], "strategies": []}}
