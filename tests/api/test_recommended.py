"""A customer's recommended strategies: each once, even when two schemes' tiers have it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

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
