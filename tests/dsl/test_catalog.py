"""Catalog arithmetic: the SQL and Python definitions give identical values on edge cases."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy import types as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl.catalog import (
    CATALOG,
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
