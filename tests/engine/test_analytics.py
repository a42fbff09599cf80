"""Analytics on Postgres: segment report, migration matrices and churn, with exact numbers.

States are set up by writing schemes, versions, runs, memberships and transitions directly,
so each test controls exactly what the engine would have recorded.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl import check_text
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db import exact
from service.db.tables import (
    customers,
    evaluation_runs,
    memberships,
    scheme_versions,
    schemes,
    tenants,
    transitions,
)
from service.engine import schemes as published
from service.engine.analytics import (
    ChurnRow,
    MigrationCell,
    SegmentRow,
    backtest_migration_matrix,
    churn_rate,
    migration_matrix,
    migration_matrix_between_dates,
    segment_dicts,
    segment_report,
    segment_table,
    tier_sizes,
)
from service.errors import NotFound, UserError

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def day(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


async def _customers(
    engine: AsyncEngine, tenant: str, names: list[str], orders: list[tuple[str, str, dt.datetime]]
) -> dict[str, int]:
    """Import customers and (customer, amount, time) orders; returns internal ids by name."""
    await import_rows(
        engine,
        Kind.customers,
        tenant,
        enumerate(({"customer_id": n, "registered_at": "2025-01-01"} for n in names), 2),
        source="test",
    )
    if orders:
        rows = (
            {"order_id": f"o{i}", "customer_id": c, "amount": a, "ordered_at": at.isoformat()}
            for i, (c, a, at) in enumerate(orders)
        )
        await import_rows(engine, Kind.orders, tenant, enumerate(rows, 2), source="test")
    async with engine.connect() as connection:
        result = await connection.execute(
            select(customers.c.external_id, customers.c.id).where(customers.c.tenant_id == tenant)
        )
        return {row.external_id: row.id for row in result}


async def _scheme(
    connection: AsyncConnection, tenant: str, key: str, versions: list[list[str]]
) -> None:
    """A scheme with the given versions' tier lists; the last version is current."""
    await connection.execute(
        schemes.insert().values(tenant_id=tenant, key=key, current_version=len(versions))
    )
    for n, tiers in enumerate(versions, 1):
        await connection.execute(
            scheme_versions.insert().values(
                tenant_id=tenant, scheme_key=key, version=n, source="", tiers=tiers
            )
        )


async def _members(
    connection: AsyncConnection, tenant: str, key: str, tiers: dict[int, str]
) -> None:
    await connection.execute(
        memberships.insert(),
        [
            {
                "tenant_id": tenant,
                "scheme_key": key,
                "customer_id": c,
                "tier": t,
                "since": T0,
                "version": 1,
            }
            for c, t in tiers.items()
        ],
    )


async def _run(
    connection: AsyncConnection,
    tenant: str,
    key: str,
    finished: dt.datetime,
    *,
    applied: bool = True,
    status: str = "succeeded",
) -> int:
    return int(
        (
            await connection.execute(
                evaluation_runs.insert()
                .values(
                    tenant_id=tenant,
                    scheme_key=key,
                    version=1,
                    as_of=finished,
                    applied=applied,
                    trigger="test",
                    status=status,
                    finished_at=finished,
                )
                .returning(evaluation_runs.c.id)
            )
        ).scalar_one()
    )


# Transition numbers for the rows written by hand (the analytics never read them).
_NUMBERS = itertools.count(1)


async def _move(
    connection: AsyncConnection,
    tenant: str,
    key: str,
    customer: int,
    change: tuple[str | None, str | None],
    at: dt.datetime,
    run: int | None = None,
) -> None:
    await connection.execute(
        transitions.insert().values(
            tenant_id=tenant,
            scheme_key=key,
            number=next(_NUMBERS),
            customer_id=customer,
            from_tier=change[0],
            to_tier=change[1],
            at=at,
            version=1,
            run_id=run,
            trigger="run" if run else "ingest",
        )
    )


# --- Segment report -----------------------------------------------------------------------


async def test_segment_report(engine: AsyncEngine, tenant: str) -> None:
    ids = await _customers(
        engine,
        tenant,
        ["c1", "c2", "c3", "c4", "c5"],
        [
            ("c1", "600", day(-10)),
            ("c1", "400", day(-2)),
            ("c2", "300", day(-40)),
            ("c3", "200", day(-20)),
            ("c5", "500", day(-5)),
        ],
    )
    # Another tenant with the same scheme key: never counted.
    other = "other_" + tenant
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=other, name=other))
    other_ids = await _customers(engine, other, ["x"], [("x", "99999", day(-1))])
    async with engine.begin() as connection:
        # Version 2 added the tier Idle, which nobody is in yet, and dropped Old, whose
        # customer stays in it until the next run.
        await _scheme(
            connection,
            tenant,
            "value",
            [["VIP", "Old"], ["VIP", "Normal", "Potential", "Idle"]],
        )
        await _scheme(connection, tenant, "abc", [["A", "B"]])
        await _scheme(connection, other, "value", [["VIP"]])
        await _members(
            connection,
            tenant,
            "value",
            {
                ids["c1"]: "VIP",
                ids["c2"]: "Normal",
                ids["c3"]: "Normal",
                ids["c4"]: "Potential",
                ids["c5"]: "Old",
            },
        )
        await _members(
            connection, tenant, "abc", {i: "A" if i == ids["c1"] else "B" for i in ids.values()}
        )
        await _members(connection, other, "value", {other_ids["x"]: "VIP"})

    async with engine.connect() as connection:
        report = await segment_report(
            connection, tenant, "value", ["frequency", "recency"], as_of=T0
        )
        everything = await segment_report(connection, tenant, None)

    # 5 customers, 2000 revenue in the tenant.
    assert report == [
        SegmentRow(
            "value",
            "VIP",
            1,
            Decimal("0.2"),
            Decimal(1000),
            Decimal(1000),
            Decimal("0.5"),
            (("frequency", Decimal(2)), ("recency", Decimal(2))),
        ),
        SegmentRow(
            "value",
            "Normal",
            2,
            Decimal("0.4"),
            Decimal(500),
            Decimal(250),
            Decimal("0.25"),
            (("frequency", Decimal(1)), ("recency", Decimal(30))),
        ),
        # No orders: revenue 0, and recency is null, so it has no average.
        SegmentRow(
            "value",
            "Potential",
            1,
            Decimal("0.2"),
            Decimal(0),
            Decimal(0),
            Decimal("0.0"),
            (("frequency", Decimal(0)), ("recency", None)),
        ),
        SegmentRow(
            "value",
            "Idle",
            0,
            Decimal("0.0"),
            Decimal(0),
            None,
            Decimal("0.0"),
            (("frequency", None), ("recency", None)),
        ),
        SegmentRow(
            "value",
            "Old",
            1,
            Decimal("0.2"),
            Decimal(500),
            Decimal(500),
            Decimal("0.25"),
            (("frequency", Decimal(1)), ("recency", Decimal(5))),
        ),
    ]
    # All schemes, by key.
    assert [(r.scheme, r.tier, r.customers) for r in everything] == [
        ("abc", "A", 1),
        ("abc", "B", 4),
        ("value", "VIP", 1),
        ("value", "Normal", 2),
        ("value", "Potential", 1),
        ("value", "Idle", 0),
        ("value", "Old", 1),
    ]
    # Every customer is in a tier of each scheme, so the shares of each sum to 1.
    abc = [r for r in everything if r.scheme == "abc"]
    assert sum(r.customer_share for r in abc) == 1.0
    assert sum(r.revenue_share for r in abc) == 1.0
    assert all(r.metrics == () for r in everything)


async def test_segment_report_rejects_metrics_without_average(
    engine: AsyncEngine, tenant: str
) -> None:
    async with engine.connect() as connection:
        with pytest.raises(UserError, match="`region` is not a numeric metric"):
            await segment_report(connection, tenant, None, ["region"])


async def test_an_unknown_scheme_is_not_found_and_a_tierless_one_empty(
    engine: AsyncEngine, tenant: str
) -> None:
    async with engine.begin() as connection:
        await published.publish(connection, tenant, "scheme empty {\n}\n")
    async with engine.connect() as connection:
        with pytest.raises(NotFound, match="no published scheme 'nope'"):
            await segment_report(connection, tenant, "nope")
        assert await segment_report(connection, tenant, "empty") == []


def test_segment_dicts_and_table() -> None:
    rows = [
        SegmentRow(
            "value",
            "VIP",
            1,
            Decimal(1) / 3,
            Decimal("1234.5"),
            Decimal("1234.5"),
            Decimal("0.61728"),
        ),
        SegmentRow(
            "value",
            "Normal",
            2,
            Decimal(2) / 3,
            Decimal("765.5"),
            Decimal("382.75"),
            Decimal("0.38272"),
        ),
    ]
    dicts = segment_dicts(rows)
    assert dicts[0] == {
        "scheme": "value",
        "tier": "VIP",
        "customers": 1,
        "customer_share": Decimal("0.3333"),
        "revenue": Decimal("1234.5"),
        "revenue_share": Decimal("0.6173"),
    }
    assert all(list(d) == list(dicts[0]) for d in dicts)
    # Ready for --format json through service.db.exact, digit for digit.
    assert '"revenue": 1234.5, "revenue_share": 0.6173}' in exact.dumps(dicts, plain_numbers=True)
    assert segment_table(rows).splitlines() == [
        "scheme  tier    customers  share   revenue  revenue share  avg revenue",
        "value   VIP             1  33.3%  1,234.50          61.7%     1,234.50",
        "value   Normal          2  66.7%    765.50          38.3%       382.75",
    ]


# --- Migration between runs ---------------------------------------------------------------


async def test_migration_matrix_between_runs(engine: AsyncEngine, tenant: str) -> None:
    ids = await _customers(engine, tenant, ["c1", "c2", "c3", "c4"], [])
    c1, c2, c3, c4 = (ids[n] for n in ("c1", "c2", "c3", "c4"))
    async with engine.begin() as connection:
        await _scheme(connection, tenant, "s", [["A", "B", "C"]])
        await _scheme(connection, tenant, "other", [["X"]])
        r1 = await _run(connection, tenant, "s", day(1))
        for c, t in ((c1, "A"), (c2, "A"), (c3, "B")):
            await _move(connection, tenant, "s", c, (None, t), day(1), r1)
        await _move(connection, tenant, "s", c3, ("B", "A"), day(1.5))  # incremental
        r2 = await _run(connection, tenant, "s", day(2))
        await _move(connection, tenant, "s", c1, ("A", "B"), day(2), r2)
        await _move(connection, tenant, "s", c4, (None, "C"), day(2), r2)
        await _move(connection, tenant, "s", c2, ("A", None), day(2.5))  # left the scheme
        r3 = await _run(connection, tenant, "s", day(3))  # changed nothing itself
        await _move(connection, tenant, "s", c1, ("B", "C"), day(3.5))  # after r3: not in it
        backtest = await _run(connection, tenant, "s", day(4), applied=False)
        failed = await _run(connection, tenant, "s", day(4), status="failed")
        other = await _run(connection, tenant, "other", day(4))

    async with engine.connect() as connection:
        first = await migration_matrix(connection, tenant, "s", r1, r2)
        second = await migration_matrix(connection, tenant, "s", r2, r3)
        same = await migration_matrix(connection, tenant, "s", r3, r3)
        for bad in (backtest, failed, other, 10**9):
            with pytest.raises(UserError):
                await migration_matrix(connection, tenant, "s", r1, bad)

    assert first == [
        MigrationCell("A", "A", 1),  # c2
        MigrationCell("A", "B", 1),  # c1
        MigrationCell("B", "A", 1),  # c3, moved by an incremental update
        MigrationCell(None, "C", 1),  # c4 entered
    ]
    assert second == [
        MigrationCell("A", "A", 1),  # c3
        MigrationCell("A", None, 1),  # c2 left
        MigrationCell("B", "B", 1),  # c1: its move to C came after r3 finished
        MigrationCell("C", "C", 1),  # c4
    ]
    assert same == [
        MigrationCell("A", "A", 1),
        MigrationCell("B", "B", 1),
        MigrationCell("C", "C", 1),
    ]


async def _recorded(engine: AsyncEngine, tenant: str) -> dict[str, int]:
    """c1 A from day 1, to B on day 20; c2 B from day 2, out of every tier on day 25; c3 A from
    day 30; c4 in a tier the current version dropped (Old) from day 3."""
    ids = await _customers(engine, tenant, ["c1", "c2", "c3", "c4"], [])
    async with engine.begin() as connection:
        await _scheme(connection, tenant, "s", [["A", "B", "Old"], ["A", "B"]])
        await _move(connection, tenant, "s", ids["c1"], (None, "A"), day(1))
        await _move(connection, tenant, "s", ids["c2"], (None, "B"), day(2))
        await _move(connection, tenant, "s", ids["c4"], (None, "Old"), day(3))
        await _move(connection, tenant, "s", ids["c1"], ("A", "B"), day(20))
        await _move(connection, tenant, "s", ids["c2"], ("B", None), day(25))
        await _move(connection, tenant, "s", ids["c3"], (None, "A"), day(30))
    return ids


async def test_migration_matrix_between_dates_reads_the_recorded_tiers(
    engine: AsyncEngine, tenant: str
) -> None:
    await _recorded(engine, tenant)
    async with engine.connect() as connection:
        cells = await migration_matrix_between_dates(connection, tenant, "s", day(10), day(40))
        assert cells == [
            MigrationCell("A", "B", 1),  # c1
            MigrationCell("B", None, 1),  # c2 left every tier
            MigrationCell("Old", "Old", 1),  # c4 stayed put, in a tier of an older version
            MigrationCell(None, "A", 1),  # c3 arrived
        ]
        # A date before anything was recorded: everyone arrives.
        early = await migration_matrix_between_dates(connection, tenant, "s", day(0), day(2))
        assert early == [MigrationCell(None, "A", 1), MigrationCell(None, "B", 1)]
        with pytest.raises(UserError):
            await migration_matrix_between_dates(connection, tenant, "s", day(40), day(10))
        with pytest.raises(NotFound):
            await migration_matrix_between_dates(connection, tenant, "nope", day(0), day(1))


async def test_tier_sizes_over_time_from_transitions(engine: AsyncEngine, tenant: str) -> None:
    await _recorded(engine, tenant)
    first = day(0).date()
    async with engine.connect() as connection:
        sizes = await tier_sizes(connection, tenant, "s", first, day(40).date())
        with pytest.raises(UserError):
            await tier_sizes(connection, tenant, "s", day(5).date(), first)
        with pytest.raises(NotFound):
            await tier_sizes(connection, tenant, "nope", first, first)
    by_day: dict[int, dict[str, int]] = {}
    for size in sizes:
        by_day.setdefault((size.day - first).days, {})[size.tier] = size.customers
    assert sorted(by_day) == list(range(41))
    assert by_day[0] == {"A": 0, "B": 0, "Old": 0}
    assert by_day[1] == {"A": 1, "B": 0, "Old": 0}
    assert by_day[3] == {"A": 1, "B": 1, "Old": 1}
    assert by_day[20] == {"A": 0, "B": 2, "Old": 1}
    assert by_day[25] == {"A": 0, "B": 1, "Old": 1}
    assert by_day[40] == {"A": 1, "B": 1, "Old": 1}
    # Tiers in the current version's order, then the dropped ones.
    assert [s.tier for s in sizes if s.day == first] == ["A", "B", "Old"]


async def test_backtest_migration_matrix(engine: AsyncEngine, tenant: str) -> None:
    await _customers(
        engine,
        tenant,
        ["a", "b", "c", "d"],
        [
            ("a", "10", day(-5)),  # active at day 0, lapsed by day 60
            ("b", "10", day(-50)),
            ("b", "10", day(50)),  # lapsed at day 0, active again at day 60
            ("c", "10", day(55)),  # no orders before day 0: in no tier, then active
        ],
    )
    scheme = check_text(
        "scheme s { tier Active when recency < 30 days\n tier Lapsed when frequency >= 1 }"
    ).schemes[0]
    async with engine.connect() as connection:
        cells = await backtest_migration_matrix(connection, tenant, scheme, T0, day(60))
    # d never ordered: in no tier at either date, so not counted.
    assert cells == [
        MigrationCell("Active", "Lapsed", 1),
        MigrationCell("Lapsed", "Active", 1),
        MigrationCell(None, "Active", 1),
    ]


async def test_backtest_migration_matrix_with_windows(engine: AsyncEngine, tenant: str) -> None:
    # Each date's statement keeps its own window start, though both have a 30-day window.
    await _customers(
        engine,
        tenant,
        ["a", "c"],
        [("a", "10", day(-5)), ("c", "10", day(55))],
    )
    scheme = check_text(
        "scheme s { tier Buying when frequency(30 days) >= 1\n tier Idle otherwise }"
    ).schemes[0]
    async with engine.connect() as connection:
        cells = await backtest_migration_matrix(connection, tenant, scheme, T0, day(60))
    assert cells == [MigrationCell("Buying", "Idle", 1), MigrationCell("Idle", "Buying", 1)]


# --- Churn --------------------------------------------------------------------------------


async def test_churn_rate(engine: AsyncEngine, tenant: str) -> None:
    since, until = day(10), day(40)
    ids = await _customers(
        engine,
        tenant,
        ["c1", "c2", "c3", "c4", "c5"],
        [
            ("c1", "10", day(20)),  # bought in the period
            ("c2", "10", day(5)),  # only before it
            ("c2", "10", until),  # and exactly at its end: not in [since, until)
            ("c3", "10", since),  # exactly at its start: counts
            ("c5", "10", day(30)),
        ],
    )
    async with engine.begin() as connection:
        await _scheme(connection, tenant, "s", [["A", "B"], ["A", "B", "C"]])
        await _move(connection, tenant, "s", ids["c1"], (None, "A"), day(1))
        await _move(connection, tenant, "s", ids["c2"], (None, "A"), day(1))
        await _move(connection, tenant, "s", ids["c3"], (None, "B"), day(1))
        await _move(connection, tenant, "s", ids["c3"], ("B", "A"), day(15))  # after `since`
        await _move(connection, tenant, "s", ids["c4"], (None, "B"), day(2))
        await _move(connection, tenant, "s", ids["c5"], (None, "B"), day(2))
        await _move(connection, tenant, "s", ids["c5"], ("B", None), since)  # gone by `since`

    async with engine.connect() as connection:
        rows = await churn_rate(connection, tenant, "s", since, until)
        with pytest.raises(UserError):
            await churn_rate(connection, tenant, "s", until, since)

    assert rows == [
        ChurnRow("s", "A", 2, 1, 0.5),  # c1 bought, c2 did not
        ChurnRow("s", "B", 2, 1, 0.5),  # c3 bought (at the start), c4 did not
        ChurnRow("s", "C", 0, 0, None),
    ]


async def test_churn_counts_purchases_not_cancelled_or_refunded_orders(
    engine: AsyncEngine, tenant: str
) -> None:
    """Churn asks whether a customer made a purchase in the period, as `frequency` counts
    them: a cancelled order or one refunded in full (by a refund dated in the period) is
    none; a partly refunded one is."""
    since, until = day(10), day(40)
    ids = await _customers(engine, tenant, ["cancelled", "refunded", "partly", "none"], [])
    rows = [
        ("o1", "cancelled", "50", day(20), "cancelled", ""),
        ("o2", "refunded", "50", day(20), "completed", ""),
        ("r2", "refunded", "-50", day(25), "completed", "o2"),
        ("o3", "partly", "50", day(20), "completed", ""),
        ("r3", "partly", "-20", day(25), "completed", "o3"),
    ]
    await import_rows(
        engine,
        Kind.orders,
        tenant,
        enumerate(
            (
                {
                    "order_id": o,
                    "customer_id": c,
                    "amount": a,
                    "ordered_at": at.isoformat(),
                    "status": status,
                    "refund_of": refund_of,
                }
                for o, c, a, at, status, refund_of in rows
            ),
            2,
        ),
        source="test",
    )
    async with engine.begin() as connection:
        await _scheme(connection, tenant, "s", [["A"]])
        for name in ids:
            await _move(connection, tenant, "s", ids[name], (None, "A"), day(1))

    async with engine.connect() as connection:
        churn = await churn_rate(connection, tenant, "s", since, until)

    assert churn == [ChurnRow("s", "A", 4, 3, Decimal(3) / Decimal(4))]  # only `partly` bought
