from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.tables import customers
from service.engine import evaluation, schemes, strategies
from service.engine.templates import TEMPLATES
from service.errors import UserError
from tests.support import VALUE, load, order, publish


async def test_recommended_strategies_follow_current_tiers_by_priority(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(engine, tenant, [order("o1", "big", 3, "6000"), order("o2", "big", 4, "1")])
    await load(engine, tenant, [order("o3", "small", 300, "5")])
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    async with engine.begin() as connection:
        await strategies.save(
            connection,
            tenant,
            scheme="value",
            tier="VIP",
            name="Call",
            channel="phone",
            priority=20,
        )
        await strategies.save(
            connection,
            tenant,
            scheme="value",
            tier="VIP",
            name="Account manager",
            channel="account_manager",
            priority=10,
            parameters={"response_hours": 4},
        )
        await strategies.save(
            connection,
            tenant,
            scheme="value",
            tier="VIP",
            name="Paused",
            channel="sms",
            priority=1,
            active=False,
        )
        await strategies.save(
            connection, tenant, scheme="value", tier="Normal", name="Newsletter", channel="email"
        )
        ids = dict(
            (
                await connection.execute(
                    select(customers.c.external_id, customers.c.id).where(
                        customers.c.tenant_id == tenant
                    )
                )
            ).all()
        )
        found = await strategies.recommended(connection, tenant, [ids["big"], ids["small"]])
    assert [s.name for s in found[ids["big"]]] == ["Account manager", "Call"]
    assert found[ids["big"]][0].parameters == {"response_hours": 4}
    assert [s.name for s in found[ids["small"]]] == ["Newsletter"]


async def test_saving_again_updates_and_unknown_tiers_are_refused(
    engine: AsyncEngine, tenant: str
) -> None:
    await publish(engine, tenant, VALUE)
    async with engine.begin() as connection:
        first = await strategies.save(
            connection, tenant, scheme="value", tier="VIP", name="Call", channel="phone"
        )
        second = await strategies.save(
            connection,
            tenant,
            scheme="value",
            tier="VIP",
            name="Call",
            channel="phone",
            priority=5,
            description="every month",
        )
        assert (second.id, second.priority, second.description) == (first.id, 5, "every month")
        with pytest.raises(UserError, match="has no tier 'Gold'"):
            await strategies.save(
                connection, tenant, scheme="value", tier="Gold", name="x", channel="email"
            )
        assert await strategies.delete(connection, tenant, first.id)
        assert await strategies.listed(connection, tenant, scheme="value") == []


async def test_template_strategies_install_once(engine: AsyncEngine, tenant: str) -> None:
    template = TEMPLATES["value"]
    async with engine.begin() as connection:
        await schemes.publish(connection, tenant, template.source)
        assert await strategies.install_template(connection, tenant, template) > 0
        await strategies.install_template(connection, tenant, template)
        installed = await strategies.listed(connection, tenant, scheme="value")
    assert len(installed) == len(template.strategies)
    assert {s.tier for s in installed} <= set(template.check().tier_names)
