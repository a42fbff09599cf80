"""The compiled SQL on real Postgres, against the in-process evaluator."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from sqlalchemy import Text, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl.catalog import CATALOG, Type, metric
from dsl.checker import check_text
from dsl.compiler import compile_scheme, metric_values_select
from dsl.evaluator import CustomerFacts, Event, Order, compute_metric_values, evaluate
from service.engine.sources import predictions
from tests.dsl.support import AS_OF, insert, rows, sources

EXAMPLE = """
scheme value "Customer value" {
  tier VIP        when monetary(365 days) > 5000 and frequency(30 days) >= 2
  tier "高价值客户" when monetary between 2000 and 5000
  tier New        when tenure < 30 days and frequency = 1
  tier Declining  when recency > 90 days and not (region in ["north", "west"])
  tier Complainer when count(event "complaint", 90 days) >= 2 or nps <= 6
  tier Normal     otherwise
}
"""


def days_ago(n: float) -> dt.datetime:
    return AS_OF - dt.timedelta(days=n)


PEOPLE = {
    "vip": CustomerFacts(
        {"region": "east", "registered_at": days_ago(400)},
        [Order(Decimal("3000"), days_ago(10)), Order(Decimal("2500.5"), days_ago(5))],
    ),
    "high": CustomerFacts({"region": "east"}, [Order(Decimal("2500"), days_ago(100))]),
    "new": CustomerFacts({"registered_at": days_ago(3)}, [Order(Decimal("10"), days_ago(1))]),
    "declining": CustomerFacts(
        {"region": "south", "registered_at": days_ago(800)}, [Order(Decimal("50"), days_ago(91))]
    ),
    "complainer": CustomerFacts(
        {"region": "north", "registered_at": days_ago(800)},
        [Order(Decimal("50"), days_ago(95))],
        [Event("complaint", days_ago(1)), Event("complaint", days_ago(80))],
    ),
    "unhappy": CustomerFacts(
        {"registered_at": days_ago(800)},
        [],
        [Event("nps", days_ago(10), Decimal(9)), Event("nps", days_ago(2), Decimal(3))],
    ),
    "nobody": CustomerFacts({}),
    "future_order": CustomerFacts({}, [Order(Decimal("9000"), AS_OF)]),
}

EXPECTED = {
    "vip": "VIP",
    "high": "高价值客户",
    "new": "New",
    "declining": "Declining",
    "complainer": "Complainer",
    "unhappy": "Complainer",
    "nobody": "Normal",
    "future_order": "Normal",
}


async def test_example_scheme_on_postgres_and_in_process(engine: AsyncEngine, tenant: str) -> None:
    scheme = check_text(EXAMPLE).schemes[0]
    async with engine.connect() as connection:
        ids = await insert(connection, tenant, list(PEOPLE.values()))
        result = await rows(connection, compile_scheme(scheme, sources(tenant), AS_OF))
        await connection.rollback()
    by_id = {row.customer_id: row.tier for row in result}
    in_sql = {name: by_id[i] for name, i in zip(PEOPLE, ids, strict=True)}
    in_process = {
        name: evaluate(scheme, compute_metric_values(scheme.refs, facts, AS_OF))
        for name, facts in PEOPLE.items()
    }
    assert in_sql == EXPECTED
    assert in_process == EXPECTED


async def test_the_example_line(engine: AsyncEngine, tenant: str) -> None:
    scheme = check_text("tier VIP when monetary > 5000 and frequency >= 2").schemes[0]

    def two(first: str, second: int) -> CustomerFacts:
        return CustomerFacts(
            {}, [Order(Decimal(first), days_ago(1)), Order(Decimal(second), days_ago(2))]
        )

    people = [
        two("5000.0001", 0),
        two("5000", 1),
        two("5000", 0),
        CustomerFacts({}, [Order(Decimal("9000"), days_ago(1))]),
    ]
    async with engine.connect() as connection:
        ids = await insert(connection, tenant, people)
        result = await rows(connection, compile_scheme(scheme, sources(tenant), AS_OF))
        await connection.rollback()
    by_id = {row.customer_id: row.tier for row in result}
    assert [by_id[i] for i in ids] == ["VIP", "VIP", None, None]
    assert [evaluate(scheme, compute_metric_values(scheme.refs, p, AS_OF)) for p in people] == [
        "VIP",
        "VIP",
        None,
        None,
    ]


def test_values_are_bound_never_inlined() -> None:
    scheme = check_text(EXAMPLE).schemes[0]
    sql = str(compile_scheme(scheme, sources("t"), AS_OF).compile(dialect=postgresql.dialect()))
    for value in ("5000", "2000", "north", "complaint", "高价值客户", "VIP", "Normal"):
        assert value not in sql


async def test_no_metric_is_a_binary_float(engine: AsyncEngine, tenant: str) -> None:
    """Every number and day metric of the catalog (from its own example) is numeric or an
    integer in Postgres: never double precision, whose digits the evaluator would not match."""
    wanted = (Type.NUMBER, Type.DAYS)
    examples = [m.example for m in CATALOG.values() if m.type in wanted]
    rules = "\n".join(f"tier T{i} when {e}" for i, e in enumerate(examples))
    # A number read from the attributes, and the metrics ranked by percentile() on their own.
    rules += "\ntier A when attributes.score > 1"
    named = check_text(rules).schemes[0].refs
    every = [*named, *(r.of for r in named if r.of)]
    refs = [r for r in every if metric(r).type in wanted or r.as_type in wanted]
    facts = CustomerFacts({}, [Order(Decimal("10"), days_ago(d)) for d in (3, 2, 2, 2)])
    async with engine.connect() as connection:
        await insert(connection, tenant, [facts])
        stored = predictions(tenant).subquery("predictions")
        with_predictions = dataclasses.replace(sources(tenant), predictions=stored)
        values = metric_values_select(refs, with_predictions, AS_OF).subquery()
        typed = select(*(func.pg_typeof(column).cast(Text) for column in list(values.c)[1:]))
        result = await connection.execute(typed.select_from(values).limit(1))
        types = dict(zip(refs, result.one(), strict=True))
        await connection.rollback()
    assert {r.name for r in refs} >= {m.name for m in CATALOG.values() if m.type is Type.NUMBER}
    assert {r: t for r, t in types.items() if t in ("double precision", "real")} == {}
