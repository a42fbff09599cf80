from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl import RuleError, compile_scheme
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.database import create_engine
from service.db.tables import customers, evaluation_runs, transitions
from service.engine import evaluation, schemes
from service.errors import UserError
from tests.dsl.strategies import conditions
from tests.support import NOW, VALUE, day, load, moves, order, publish, tiers_of


async def test_a_full_run_assigns_every_customer_and_records_the_moves(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(
        engine,
        tenant,
        [
            order("o1", "big", 10, "4000"),
            order("o2", "big", 20, "3000"),
            order("o3", "recent", 5, "10"),
            order("o4", "old", 400, "10"),
        ],
    )
    await publish(engine, tenant, VALUE)
    result = await evaluation.evaluate(engine, tenant, "value")
    assert result is not None
    assert [(t.tier, t.customers, t.revenue) for t in result.tiers] == [
        ("VIP", 1, Decimal("7000.0000")),
        ("Active", 1, Decimal("10.0000")),
        ("Normal", 1, Decimal("10.0000")),
    ]
    assert (result.customers, result.changed, result.applied) == (3, 3, True)
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {
            "big": "VIP",
            "recent": "Active",
            "old": "Normal",
        }
        assert sorted(await moves(connection, tenant)) == [
            ("big", None, "VIP", "manual", True),
            ("old", None, "Normal", "manual", True),
            ("recent", None, "Active", "manual", True),
        ]
        run = (
            await connection.execute(
                select(evaluation_runs).where(evaluation_runs.c.id == result.run_id)
            )
        ).one()
    assert (run.status, run.version, run.customers, run.changed) == ("succeeded", 1, 3, 3)
    assert run.tiers[0] == {"tier": "VIP", "customers": 1, "revenue": "7000.0000"}

    again = await evaluation.evaluate(engine, tenant, "value")
    assert again is not None and again.changed == 0


async def test_a_backtest_sees_only_data_before_its_date_and_changes_nothing(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(engine, tenant, [order("o1", "c", 100, "6000"), order("o2", "c", 50, "10")])
    await import_rows(
        engine,
        Kind.customers,
        tenant,
        enumerate([{"customer_id": "later", "registered_at": day(30)}], 2),
        source="test",
    )
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    async with engine.connect() as connection:
        before = await tiers_of(connection, tenant, "value")
    assert before == {"c": "VIP", "later": "Normal"}
    # 60 days ago c had one order (then 40 days old): active, not yet VIP; `later` had not
    # registered yet, so is in no tier of the backtest.
    backtest = await evaluation.evaluate(engine, tenant, "value", as_of=NOW - dt.timedelta(days=60))
    assert backtest is not None and not backtest.applied and backtest.changed == 0
    assert [(t.tier, t.customers, t.revenue) for t in backtest.tiers] == [
        ("VIP", 0, Decimal(0)),
        ("Active", 1, Decimal("6000.0000")),
        ("Normal", 0, Decimal(0)),
    ]
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == before


BASE_AND_DEP = """
scheme base {
  tier Big   when monetary >= 100
  tier Small otherwise
}
scheme dep {
  tier Yes when in tier base.Big
  tier No  otherwise
}
scheme top {
  tier Both when in tier dep.Yes and in tier base.Big
  tier Not  otherwise
}
"""


async def test_a_backtest_reads_the_tiers_of_referenced_schemes_as_of_then(
    engine: AsyncEngine, tenant: str
) -> None:
    """Today eve is Big, so dep says Yes; 45 days ago she had spent 50: Small, and a backtest
    of dep (alone, or of all schemes) must say No, not read today's Big."""
    await load(engine, tenant, [order("o1", "eve", 60, "50"), order("o2", "eve", 30, "60")])
    await publish(engine, tenant, BASE_AND_DEP)
    await evaluation.evaluate_all(engine, tenant)
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "dep") == {"eve": "Yes"}
    then = NOW - dt.timedelta(days=45)
    alone = await evaluation.evaluate(engine, tenant, "top", as_of=then)
    assert alone is not None
    assert [(t.tier, t.customers) for t in alone.tiers] == [("Both", 0), ("Not", 1)]
    runs = await evaluation.evaluate_all(engine, tenant, as_of=then)
    assert {run.scheme: [(t.tier, t.customers) for t in run.tiers] for run in runs} == {
        "base": [("Big", 0), ("Small", 1)],
        "dep": [("Yes", 0), ("No", 1)],
        "top": [("Both", 0), ("Not", 1)],
    }
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "dep") == {"eve": "Yes"}


async def test_a_backtest_counts_only_customers_who_existed_by_then(
    engine: AsyncEngine, tenant: str
) -> None:
    people = [
        {"customer_id": "registered", "registered_at": day(90)},
        {"customer_id": "registers_later", "registered_at": day(10)},
        {"customer_id": "no_dates"},
    ]
    await import_rows(engine, Kind.customers, tenant, enumerate(people, 2), source="test")
    await load(engine, tenant, [order("o1", "bought", 70, "10"), order("o2", "new", 5, "10")])
    await import_rows(
        engine,
        Kind.events,
        tenant,
        enumerate([{"customer_id": "visited", "type": "login", "occurred_at": day(80)}], 2),
        source="test",
    )
    await publish(engine, tenant, "scheme all_ { tier Everyone otherwise }")
    run = await evaluation.evaluate(engine, tenant, "all_")
    assert run is not None and run.customers == 6
    # 30 days ago: registered, bought and visited existed; the others came later (no_dates
    # was first recorded today).
    backtest = await evaluation.evaluate(engine, tenant, "all_", as_of=NOW - dt.timedelta(30))
    assert backtest is not None and backtest.customers == 3


async def test_a_backtest_preview_evaluates_the_schemes_it_reads_as_of_then(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(engine, tenant, [order("o1", "eve", 60, "50"), order("o2", "eve", 30, "60")])
    await publish(engine, tenant, BASE_AND_DEP)
    await evaluation.evaluate_all(engine, tenant)
    then = NOW - dt.timedelta(days=45)
    draft_dep = "scheme dep {\n  tier Yes when in tier base.Big\n  tier No otherwise\n}\n"
    # A draft reading a published scheme: that scheme as of then.
    (dep,) = await evaluation.preview(engine, tenant, draft_dep, as_of=then)
    assert [(t.tier, t.customers) for t in dep.tiers] == [("Yes", 0), ("No", 1)]
    # Drafts reading each other: the drafts, in dependency order, now and as of then.
    lowered = BASE_AND_DEP.replace(">= 100", ">= 40")
    now = {p.scheme: p for p in await evaluation.preview(engine, tenant, lowered)}
    assert [(t.tier, t.customers) for t in now["top"].tiers] == [("Both", 1), ("Not", 0)]
    past = {p.scheme: p for p in await evaluation.preview(engine, tenant, lowered, as_of=then)}
    assert [(t.tier, t.customers) for t in past["dep"].tiers] == [("Yes", 1), ("No", 0)]
    drafts = BASE_AND_DEP.replace(">= 100", ">= 1000")
    past = {p.scheme: p for p in await evaluation.preview(engine, tenant, drafts, as_of=then)}
    assert [(t.tier, t.customers) for t in past["top"].tiers] == [("Both", 0), ("Not", 1)]
    assert list(past) == ["base", "dep", "top"]


async def test_a_backtest_in_the_future_is_refused(engine: AsyncEngine, tenant: str) -> None:
    await load(engine, tenant, [order("o1", "c", 1, "10")])
    await publish(engine, tenant, VALUE)
    future = NOW + dt.timedelta(days=1)
    with pytest.raises(UserError, match="is in the future"):
        await evaluation.evaluate(engine, tenant, "value", as_of=future)
    with pytest.raises(UserError, match="is in the future"):
        await evaluation.evaluate_all(engine, tenant, as_of=future)
    with pytest.raises(UserError, match="is in the future"):
        await evaluation.preview(engine, tenant, VALUE, as_of=future)
    async with engine.connect() as connection:
        runs = await connection.scalar(
            select(func.count()).where(evaluation_runs.c.tenant_id == tenant)
        )
    assert runs == 0


async def test_ingest_updates_tiers_incrementally(engine: AsyncEngine, tenant: str) -> None:
    await load(engine, tenant, [order("o1", "c", 200, "100")])
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    await load(
        engine,
        tenant,
        [order("o2", "c", 3, "5000"), order("o3", "new", 1, "1")],
        after_load=evaluation.refresh_affected,
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"c": "VIP", "new": "Active"}
        assert (await moves(connection, tenant))[1:] == [
            ("c", "Normal", "VIP", "ingest", False),
            ("new", None, "Active", "ingest", False),
        ]


# --- Full and incremental paths agree --------------------------------------------------------

customer_ids = st.sampled_from([f"c{i}" for i in range(5)])
order_rows = st.builds(
    order,
    st.sampled_from([f"o{i}" for i in range(10)]),
    customer_ids,
    st.integers(0, 500),
    st.decimals(0, 8000, places=2).map(str),
).flatmap(
    # Mostly sales; some cancelled, some refunds (unlinked, or of an order that may be the
    # customer's, another's or not yet known).
    lambda row: st.sampled_from(
        [
            row,
            row,
            row,
            {**row, "status": "cancelled"},
            {**row, "amount": "-" + row["amount"]},
            *({**row, "refund_of": f"o{i}"} for i in range(3)),
        ]
    )
)
batches = st.lists(st.lists(order_rows, min_size=1, max_size=4), min_size=1, max_size=4)
rules = st.lists(conditions(), min_size=1, max_size=3).map(
    lambda conds: (
        "scheme s {\n"
        + "\n".join(f"tier T{i} when {c}" for i, c in enumerate(conds))
        + "\ntier Rest otherwise\n}\n"
    )
)


async def _incremental_equals_full(
    database: URL, source: str, history: list[list[dict[str, str]]]
) -> None:
    engine = create_engine(database, pool_size=2, max_overflow=2)
    tenant = f"inc_{secrets.token_hex(4)}"
    try:
        await publish(engine, tenant, VALUE)
        try:
            await publish(engine, tenant, source)
        except RuleError:
            assume(False)
        async with engine.connect() as connection:
            published = await schemes.current(connection, tenant)
        assume(not any(s.uses_population for s in published))

        async def refresh(connection: AsyncConnection, tenant_id: str) -> None:
            await evaluation.refresh_affected(connection, tenant_id, now=NOW)

        for batch in history:
            await load(engine, tenant, batch, after_load=refresh)
        async with engine.connect() as connection:
            for scheme in published:  # dependency order: `value` before `s`
                expected = await connection.execute(
                    compile_scheme(scheme.checked, evaluation.tenant_sources(tenant), NOW)
                )
                ids = dict(
                    (
                        await connection.execute(
                            select(customers.c.id, customers.c.external_id).where(
                                customers.c.tenant_id == tenant
                            )
                        )
                    ).all()
                )
                full = {ids[row.customer_id]: row.tier for row in expected if row.tier is not None}
                assert await tiers_of(connection, tenant, scheme.key) == full, scheme.source
    finally:
        await engine.dispose()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(source=rules, history=batches)
def test_incremental_updates_equal_a_full_run(
    database: URL, source: str, history: list[list[dict[str, str]]]
) -> None:
    asyncio.run(_incremental_equals_full(database, source, history))


async def test_listeners_hear_of_transitions_when_they_commit(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(engine, tenant, [order("o1", "c", 5, "10")])
    await publish(engine, tenant, VALUE)
    heard: list[str] = []
    async with engine.connect() as listener:
        driver = (await listener.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.add_listener(
            evaluation.TRANSITIONS_CHANNEL, lambda *args: heard.append(args[-1])
        )
        result = await evaluation.evaluate(engine, tenant, "value")
        assert result is not None
        for _ in range(100):
            if any(json.loads(p)["tenant"] == tenant for p in heard):
                break
            await asyncio.sleep(0.05)
    mine = [json.loads(p) for p in heard if json.loads(p)["tenant"] == tenant]
    async with engine.connect() as connection:
        last = await connection.scalar(
            select(func.max(transitions.c.id)).where(transitions.c.tenant_id == tenant)
        )
    assert mine == [{"tenant": tenant, "scheme": "value", "last_id": last}]


async def test_incremental_updates_run_at_their_own_time(engine: AsyncEngine, tenant: str) -> None:
    # The staging statement is built once per scheme version; its windows follow each call.
    await publish(
        engine,
        tenant,
        "scheme recent { tier Recent when frequency(30 days) >= 1\n tier Quiet otherwise }",
    )

    async def order_at(moment: dt.datetime, amount: str) -> None:
        # A changed amount, so the customer counts as touched and is refreshed.
        async def refresh(connection: AsyncConnection, tenant_id: str) -> None:
            await evaluation.refresh_affected(connection, tenant_id, now=moment)

        await load(engine, tenant, [order("o1", "c", 10, amount)], after_load=refresh)

    await order_at(NOW, "5")
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "recent") == {"c": "Recent"}
    await order_at(NOW + dt.timedelta(days=40), "6")  # the order is now 50 days old
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "recent") == {"c": "Quiet"}


def _statements_reading_orders(engine: AsyncEngine) -> list[str]:
    """Collects, from now on, each statement the engine runs that reads the `orders` table
    (statistics upkeep, ANALYZE, aside)."""
    seen: list[str] = []
    reads = re.compile(r"\b(FROM|JOIN)\s+orders\b", re.IGNORECASE)

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if reads.search(statement) and not statement.lstrip().upper().startswith("ANALYZE"):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return seen


async def test_a_run_and_a_preview_read_the_orders_once(engine: AsyncEngine, tenant: str) -> None:
    """Revenue per tier comes from the statement that computes the tiers, not from a second
    pass over the orders; the figures stay those of the orders before the run's time."""
    await load(
        engine,
        tenant,
        [
            order("o1", "big", 10, "4000"),
            order("o2", "big", 20, "3000"),
            order("o3", "recent", 5, "10"),
            order("o4", "old", 400, "10"),
        ],
    )
    await publish(engine, tenant, VALUE)
    run_engine = create_engine(engine.url)
    try:
        seen = _statements_reading_orders(run_engine)
        result = await evaluation.evaluate(run_engine, tenant, "value")
        assert result is not None
        assert len(seen) == 1
        assert [(t.tier, t.customers, t.revenue) for t in result.tiers] == [
            ("VIP", 1, Decimal("7000.0000")),
            ("Active", 1, Decimal("10.0000")),
            ("Normal", 1, Decimal("10.0000")),
        ]
        seen.clear()
        backtest = await evaluation.evaluate(
            run_engine, tenant, "value", as_of=NOW - dt.timedelta(days=15)
        )
        assert backtest is not None
        assert len(seen) == 1  # `existed_by` looks orders up by customer, within that one
        # 15 days ago: big had spent 3000 (o1 came later), recent did not exist yet.
        assert [(t.tier, t.customers, t.revenue) for t in backtest.tiers] == [
            ("VIP", 0, Decimal(0)),
            ("Active", 1, Decimal("3000.0000")),
            ("Normal", 1, Decimal("10.0000")),
        ]
        seen.clear()
        (preview,) = await evaluation.preview(run_engine, tenant, VALUE)
        assert len(seen) == 1
        assert preview.tiers == result.tiers
    finally:
        await run_engine.dispose()


async def test_incremental_updates_move_windows_that_end_in_the_past(
    engine: AsyncEngine, tenant: str
) -> None:
    # Both bounds of `30 days, 30 days ago` ([T-60 d, T-30 d)) follow each update's time, as
    # a full run at that time would place them.
    await publish(
        engine,
        tenant,
        "scheme trend {\n"
        "  tier Declining when monetary(30 days) < 0.5 * monetary(30 days, 30 days ago)\n"
        "  tier Steady otherwise\n}",
    )

    async def order_at(moment: dt.datetime, amount: str) -> None:
        async def refresh(connection: AsyncConnection, tenant_id: str) -> None:
            await evaluation.refresh_affected(connection, tenant_id, now=moment)

        await load(engine, tenant, [order("o1", "c", 10, amount)], after_load=refresh)

    await order_at(NOW, "5")  # 10 days old: this period 5, the one before 0
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "trend") == {"c": "Steady"}
    await order_at(NOW + dt.timedelta(days=25), "6")  # 35 days old: now in the period before
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "trend") == {"c": "Declining"}
    await order_at(NOW + dt.timedelta(days=55), "7")  # 65 days old: in neither period
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "trend") == {"c": "Steady"}
