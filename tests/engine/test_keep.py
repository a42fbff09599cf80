"""`keep N days`: a tier keeps its members for N days after its condition stops holding, the
same in full runs, incremental updates, backtests and the in-process evaluator."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl import check_text, compile_scheme, metric_values_select
from dsl.evaluator import CustomerFacts, Kept, Order, compute_metric_values, place
from dsl.explain import Explanation, explain
from service.data.rollups import CREATE_AFFECTED
from service.db.database import create_engine, tenant_transaction
from service.db.tables import customers
from service.engine import analytics, evaluation
from service.engine.sources import kept_members, tenant_sources
from tests.support import NOW, load, publish, tiers_of

KEEP = """
scheme loyalty {
  tier Gold   when monetary(60 days) >= 1000 keep 30 days
  tier Silver when frequency(60 days) >= 1 keep 2 weeks
  tier Rest   otherwise
}
"""
START = NOW - dt.timedelta(days=400)


def _order(number: int, customer: str, day: int, amount: str) -> dict[str, str]:
    return {
        "order_id": f"o{number}",
        "customer_id": customer,
        "ordered_at": (START + dt.timedelta(days=day, hours=1)).isoformat(),
        "amount": amount,
    }


async def _ids(connection: AsyncConnection, tenant: str) -> dict[int, str]:
    rows = await connection.execute(
        select(customers.c.id, customers.c.external_id).where(customers.c.tenant_id == tenant)
    )
    return dict(rows.all())  # type: ignore[arg-type]


async def _incremental(engine: AsyncEngine, tenant: str, at: dt.datetime) -> None:
    """An incremental update of every customer at ``at``, as ingest makes one."""
    async with tenant_transaction(engine, tenant) as connection:
        await connection.execute(text(CREATE_AFFECTED))
        await connection.execute(
            text("INSERT INTO affected_customers SELECT id, false FROM customers")
        )
        await evaluation.refresh_affected(connection, tenant, now=at)


async def _backtest(engine: AsyncEngine, tenant: str, at: dt.datetime) -> dict[str, str]:
    """The tiers a backtest as of ``at`` computes (the statement `evaluate(as_of=at)` runs)."""
    async with tenant_transaction(engine, tenant) as connection:
        (scheme,) = await evaluation.published.current(connection, tenant)
        ids = await _ids(connection, tenant)
        rows = await connection.execute(
            compile_scheme(scheme.checked, tenant_sources(tenant, backtest=at), at)
        )
        return {ids[row.customer_id]: row.tier for row in rows if row.tier is not None}


def _in_process(orders: list[dict[str, str]], times: list[dt.datetime]) -> list[dict[str, str]]:
    """Every evaluation's tiers from the in-process evaluator, carrying the kept state."""
    (scheme,) = check_text(KEEP).schemes
    facts = {
        c: CustomerFacts(
            {},
            [
                Order(Decimal(o["amount"]), dt.datetime.fromisoformat(o["ordered_at"]))
                for o in orders
                if o["customer_id"] == c
            ],
        )
        for c in {o["customer_id"] for o in orders}
    }
    state: dict[str, Kept] = {}
    results = []
    for at in times:
        for customer, its in facts.items():
            values = compute_metric_values(scheme.refs, its, at)
            tier, held = place(scheme, values, state.get(customer), at)
            before = state.get(customer)
            if tier is None:
                state.pop(customer, None)
            elif not held or before is None or before.tier != tier:
                state[customer] = Kept(tier, at)
        results.append({c: k.tier for c, k in state.items()})
    return results


async def _agree(database: URL, orders: list[dict[str, str]], steps: list[int]) -> None:
    engine = create_engine(database, pool_size=2, max_overflow=2)
    full, incremental = f"kf_{secrets.token_hex(4)}", f"ki_{secrets.token_hex(4)}"
    try:
        for tenant in (full, incremental):
            await load(engine, tenant, orders)
            await publish(engine, tenant, KEEP)
        times = []
        at = START
        for step in steps:
            at += dt.timedelta(days=step)
            times.append(at)
        expected = _in_process(orders, times)
        for at, tiers in zip(times, expected, strict=True):
            await evaluation.evaluate(engine, full, "loyalty", now=at)
            await _incremental(engine, incremental, at)
            async with engine.connect() as connection:
                assert await tiers_of(connection, full, "loyalty") == tiers, at
                assert await tiers_of(connection, incremental, "loyalty") == tiers, at
        # A backtest reads the membership history as of its time: it places every customer
        # where the run of then did (of those who existed then: with an order before it).
        for at, tiers in zip(times, expected, strict=True):
            existed = {
                o["customer_id"] for o in orders if dt.datetime.fromisoformat(o["ordered_at"]) < at
            }
            then = {c: tier for c, tier in tiers.items() if c in existed}
            assert await _backtest(engine, full, at) == then, at
            assert await _backtest(engine, incremental, at) == then, at
    finally:
        await engine.dispose()


order_histories = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 300),
        st.sampled_from(["50", "400", "1200"]),
    ),
    min_size=1,
    max_size=12,
).map(lambda rows: [_order(i, c, d, a) for i, (c, d, a) in enumerate(rows)])
# Evaluations at most as far apart as the shortest keep (14 days): see `kept_then`.
evaluation_steps = st.lists(st.integers(1, 14), min_size=1, max_size=25)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(orders=order_histories, steps=evaluation_steps)
def test_a_kept_tier_is_the_same_in_full_runs_incremental_updates_and_backtests(
    database: URL, orders: list[dict[str, str]], steps: list[int]
) -> None:
    asyncio.run(_agree(database, orders, steps))


async def test_a_gold_member_is_kept_for_the_keep_then_the_next_tier_takes_them(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(engine, tenant, [_order(1, "c", 0, "1200")])
    await publish(engine, tenant, KEEP)

    def day(n: int) -> dt.datetime:
        return START + dt.timedelta(days=n)

    async def tier_at(n: int) -> str:
        await evaluation.evaluate(engine, tenant, "loyalty", now=day(n))
        async with engine.connect() as connection:
            return (await tiers_of(connection, tenant, "loyalty"))["c"]

    assert await tier_at(1) == "Gold"
    assert await tier_at(50) == "Gold"  # qualifies: last qualified on day 50
    # The order left the 60-day window on day 61: kept until day 80 (50 + 30).
    assert await tier_at(61) == "Gold"
    assert await tier_at(80) == "Gold"
    assert await tier_at(81) == "Rest"  # Silver's own condition does not hold either
    async with tenant_transaction(engine, tenant) as connection:
        holds = (
            await connection.execute(
                text("SELECT tier, qualified_at, held_from, ended_at FROM tier_holds")
            )
        ).all()
    assert [tuple(row) for row in holds] == [("Gold", day(50), day(61), day(81))]
    # Backtests read that history: kept on day 70, moved on by day 90.
    assert await _backtest(engine, tenant, day(70)) == {"c": "Gold"}
    assert await _backtest(engine, tenant, day(90)) == {"c": "Rest"}
    (scheme,) = check_text(KEEP).schemes
    async with tenant_transaction(engine, tenant) as connection:
        matrix = await analytics.backtest_migration_matrix(
            connection, tenant, scheme, day(50), day(70)
        )
    assert [(m.from_tier, m.to_tier, m.customers) for m in matrix] == [("Gold", "Gold", 1)]


async def test_a_higher_tier_takes_a_kept_member_as_soon_as_it_matches(
    engine: AsyncEngine, tenant: str
) -> None:
    await publish(
        engine,
        tenant,
        "scheme loyalty {\n"
        "  tier Platinum when monetary(30 days) >= 5000\n"
        "  tier Gold when monetary(60 days) >= 1000 keep 30 days\n"
        "  tier Rest otherwise\n}",
    )
    await load(engine, tenant, [_order(1, "c", 0, "1200"), _order(2, "c", 70, "6000")])
    for n, expected in ((1, "Gold"), (50, "Gold"), (65, "Gold"), (71, "Platinum")):
        await evaluation.evaluate(engine, tenant, "loyalty", now=START + dt.timedelta(days=n))
        async with engine.connect() as connection:
            assert (await tiers_of(connection, tenant, "loyalty"))["c"] == expected, n


DOCS = Path(__file__).parents[2] / "docs" / "rules.md"


async def test_the_documented_loyalty_example(engine: AsyncEngine, tenant: str) -> None:
    """docs/rules.md's `keep` example, run: Gold is kept for 90 days after it last qualified,
    explained as such, then Silver takes the customer."""
    section = DOCS.read_text(encoding="utf-8").split("### Status that holds", 1)[1]
    source = section.split("```rules\n", 1)[1].split("```", 1)[0]
    await publish(engine, tenant, source)
    await load(engine, tenant, [_order(1, "c", 0, "10000"), _order(2, "c", 200, "2500")])
    (scheme,) = check_text(source).schemes

    def day(n: int) -> dt.datetime:
        return START + dt.timedelta(days=n)

    async def at(n: int) -> tuple[str, Explanation]:
        await evaluation.evaluate(engine, tenant, "loyalty", now=day(n))
        async with tenant_transaction(engine, tenant) as connection:
            (row,) = (
                await connection.execute(
                    metric_values_select(scheme.refs, tenant_sources(tenant), day(n))
                )
            ).all()
            kept = await kept_members(connection, tenant, scheme, [row.customer_id])
            why = explain(
                scheme,
                dict(zip(scheme.refs, row[1:], strict=True)),
                kept.get(row.customer_id),
                day(n),
            )
            return (await tiers_of(connection, tenant, "loyalty"))["c"], why

    assert (await at(1))[0] == "Gold"
    assert (await at(300))[0] == "Gold"  # 12,500 in the last year: qualifies on day 300
    # Day 366: the 10,000 order is more than a year old; Gold keeps them until day 390.
    tier, why = await at(366)
    assert tier == "Gold" and why.tier == "Gold"
    assert why.tiers[0].result == "false"
    assert why.tiers[0].kept == (
        f"kept: qualified last on {day(300).date()}, held until {day(390).date()}"
    )
    assert (await at(390))[0] == "Gold"
    assert (await at(391))[0] == "Silver"  # 2,500 in the last year
