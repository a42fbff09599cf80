"""The audit trail: rule and strategy changes recorded with who, what before and after, and
where from, in the transaction of the change."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.db.database import tenant_transaction
from service.engine import schemes, strategies
from service.errors import UserError
from tests.support import VALUE

ANA = audit.Actor("ana@example.com", "analyst", "10.0.0.7", "req-1")


async def test_publishing_records_the_replaced_and_the_new_version(
    engine: AsyncEngine, tenant: str
) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        await schemes.publish(connection, tenant, VALUE, actor=ANA)
        await schemes.publish(connection, tenant, VALUE, actor=ANA)  # unchanged: no version
        await schemes.publish(connection, tenant, VALUE.replace("5000", "6000"), actor=ANA)
        entries = await audit.entries(connection, tenant)
    assert [(e.action, e.target, e.actor, e.role, e.source, e.request_id) for e in entries] == [
        ("scheme.publish", "value", "ana@example.com", "analyst", "10.0.0.7", "req-1")
    ] * 2
    newest, first = entries
    assert first.before is None and first.after["version"] == 1
    assert newest.before == first.after
    assert newest.after["version"] == 2 and "6000" in newest.after["source"]


async def test_strategy_changes_record_before_and_after(engine: AsyncEngine, tenant: str) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        await schemes.publish(connection, tenant, VALUE)
        made = await strategies.save(
            connection, tenant, scheme="value", tier="VIP", name="Call", channel="phone", actor=ANA
        )
        await strategies.save(
            connection,
            tenant,
            scheme="value",
            tier="VIP",
            name="Call",
            channel="phone",
            priority=5,
            actor=ANA,
        )
        assert await strategies.delete(connection, tenant, made.id, actor=ANA)
        entries = await audit.entries(connection, tenant, action=None)
    deleted, updated, created, published = entries
    assert published.actor == audit.SERVICE.subject
    assert [e.action for e in (created, updated, deleted)] == [
        "strategy.create",
        "strategy.update",
        "strategy.delete",
    ]
    assert created.before is None and created.after["priority"] == 100
    assert updated.before == created.after and updated.after["priority"] == 5
    assert deleted.before == updated.after and deleted.after is None
    assert {e.target for e in (created, updated, deleted)} == {"value/VIP/Call"}


async def test_a_failed_change_leaves_no_entry(engine: AsyncEngine, tenant: str) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        await schemes.publish(connection, tenant, VALUE)
    with pytest.raises(UserError):
        async with tenant_transaction(engine, tenant) as connection:
            await strategies.save(
                connection, tenant, scheme="value", tier="Gold", name="x", channel="y", actor=ANA
            )
    async with tenant_transaction(engine, tenant) as connection:
        assert [e.action for e in await audit.entries(connection, tenant)] == ["scheme.publish"]


async def test_entries_page_newest_first_and_filter_by_action(
    engine: AsyncEngine, tenant: str
) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        for n in range(5):
            await audit.record(connection, tenant, ANA, "test.step", f"t{n}")
        await audit.record(connection, tenant, ANA, "other", "o")
        first = await audit.entries(connection, tenant, action="test.step", limit=2)
        rest = await audit.entries(connection, tenant, action="test.step", before_id=first[-1].id)
    assert [e.target for e in first] == ["t4", "t3"]
    assert [e.target for e in rest] == ["t2", "t1", "t0"]
