"""Catalog arithmetic: the SQL and Python definitions give identical values on edge cases."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import bindparam, column, select, values
from sqlalchemy import types as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl.catalog import (
    CATALOG,
    cumulative_share_py,
    cumulative_share_sql,
    days_between_py,
    days_between_sql,
    rounded_average_py,
    rounded_average_sql,
)

# Exact ties at the fifth decimal, negatives, and sums whose quotient does not terminate.
AVERAGES = [
    (Decimal("0.0001"), 2),
    (Decimal("-0.0001"), 2),
    (Decimal("0.0003"), 2),
    (Decimal("10"), 3),
    (Decimal("-10"), 3),
    (Decimal("99999999999999.9999"), 7),
    (Decimal("0"), 1),
    (Decimal("1.2345"), 1),
    (Decimal("2.0001"), 4),
]


async def test_rounded_average_matches_postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        for total, count in AVERAGES:
            query = select(
                rounded_average_sql(
                    bindparam("t", total, type_=sa.Numeric()),
                    bindparam("n", count, type_=sa.Integer()),
                )
            )
            in_sql = (await connection.execute(query)).scalar_one()
            assert in_sql == rounded_average_py(total, count), (total, count)
    assert rounded_average_py(Decimal("0.0001"), 2) == Decimal("0.0001")  # half away from zero
    assert rounded_average_py(Decimal("-0.0001"), 2) == Decimal("-0.0001")
    assert rounded_average_py(Decimal(0), 0) is None


T = dt.datetime(2026, 3, 29, 12, 0, tzinfo=dt.UTC)  # a DST change day in Europe


@pytest.mark.parametrize(
    "before",
    [
        dt.timedelta(0),
        dt.timedelta(microseconds=1),
        dt.timedelta(days=1, microseconds=-1),
        dt.timedelta(days=1),
        dt.timedelta(days=365, hours=23),
        dt.timedelta(days=-1),
    ],
)
async def test_whole_days_match_postgres(engine: AsyncEngine, before: dt.timedelta) -> None:
    start = T - before
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SET TIME ZONE 'Europe/Berlin'")
        query = select(
            days_between_sql(
                bindparam("s", start, type_=sa.DateTime(timezone=True)),
                bindparam("e", T, type_=sa.DateTime(timezone=True)),
            )
        )
        assert (await connection.execute(query)).scalar_one() == days_between_py(start, T)


def test_every_metric_is_fully_described() -> None:
    for metric in CATALOG.values():
        assert metric.description and metric.example, metric.name
        assert set(metric.required) <= set(metric.params)


CUMULATIVE_CASES = [
    # ties share one value; the bottom customer always holds the whole total
    [Decimal("700"), Decimal("100"), Decimal("100"), Decimal("50"), Decimal("50"), Decimal(0)],
    # a non-terminating ratio rounds up, exactly (1/3 of 100 is 33.33...)
    [Decimal("1"), Decimal("1"), Decimal("1"), None],
    # a refund-heavy customer: negative values are ranked last and lower the share
    [Decimal("90.0001"), Decimal("20"), Decimal("-10")],
    # no positive total: no shares
    [Decimal(0), Decimal(0)],
    [Decimal("-5"), None],
]


@pytest.mark.parametrize("amounts", CUMULATIVE_CASES)
async def test_cumulative_share_matches_postgres(
    engine: AsyncEngine, amounts: list[Decimal | None]
) -> None:
    rows = values(column("k", sa.Integer()), column("v", sa.Numeric()), name="population").data(
        list(enumerate(amounts))
    )
    query = select(rows.c.k, cumulative_share_sql(rows.c.v))
    async with engine.connect() as connection:
        in_sql = {k: share for k, share in (await connection.execute(query)).all()}
    assert in_sql == cumulative_share_py(dict(enumerate(amounts)))


def test_cumulative_share_is_the_pareto_curve() -> None:
    shares = cumulative_share_py(dict(enumerate(CUMULATIVE_CASES[0])))
    # 700 of 1000 is 70 %; both 100s are counted for each of them: 900 of 1000.
    assert shares == {0: 70, 1: 90, 2: 90, 3: 100, 4: 100, 5: 100}
    assert cumulative_share_py(dict(enumerate(CUMULATIVE_CASES[1]))) == {
        0: 100,
        1: 100,
        2: 100,
        3: None,
    }
    assert cumulative_share_py({"a": Decimal(1), "b": Decimal(2)}) == {"a": 100, "b": 67}
