"""Property: compiled SQL on Postgres and the in-process evaluator agree on every input."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl import checked as c
from dsl.catalog import (
    CATALOG,
    MetricRef,
    Type,
    cumulative_share_py,
    population_py,
    ranks_buyers_only,
)
from dsl.checker import check_condition, check_text
from dsl.compiler import _operand, compile_scheme, metric_values_select, metrics_relation
from dsl.errors import RuleError
from dsl.evaluator import (
    CustomerFacts,
    compute_metric_values,
    evaluate,
    is_population,
    operand_value,
)
from dsl.parser import parse_condition
from tests.dsl.strategies import (
    KNOWN_TIERS,
    customers,
    day_expressions,
    number_expressions,
    schemes,
)
from tests.dsl.support import AS_OF, insert, rows, sources

_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _comparable(ref: MetricRef, value: Any) -> Any:
    # Raw JSON attribute values are only ever tested for null.
    if ref.name == "attributes" and ref.as_type is None:
        return value is None
    # A binary float is never equal to an exact value, even one it happens to hold (0.5).
    return (type(value).__name__, value) if isinstance(value, float) else value


@_SETTINGS
@given(rule=schemes(), people=st.lists(customers(), min_size=1, max_size=6))
async def test_sql_and_evaluator_agree(
    engine: AsyncEngine, tenant: str, rule: str, people: list[CustomerFacts]
) -> None:
    scheme = check_text(rule, known_tiers=KNOWN_TIERS).schemes[0]
    refs = list(scheme.refs)
    async with engine.connect() as connection:
        ids = await insert(connection, tenant, people)
        tiers = await rows(connection, compile_scheme(scheme, sources(tenant), AS_OF))
        values = await rows(connection, metric_values_select(refs, sources(tenant), AS_OF))
        await connection.rollback()
    sql_tier = {row.customer_id: row.tier for row in tiers}
    sql_values = {row.customer_id: dict(zip(refs, row[1:], strict=True)) for row in values}
    for customer_id, facts in zip(ids, people, strict=True):
        given_population = {r: v for r, v in sql_values[customer_id].items() if is_population(r)}
        mine = compute_metric_values(refs, facts, AS_OF, population_values=given_population)
        assert {r: _comparable(r, v) for r, v in mine.items()} == {
            r: _comparable(r, v) for r, v in sql_values[customer_id].items()
        }, rule
        assert evaluate(scheme, mine) == sql_tier[customer_id], rule


_POPULATION = [
    MetricRef("r_score"),
    MetricRef("f_score"),
    MetricRef("m_score"),
    MetricRef("percentile", of=MetricRef("monetary", window_days=90)),
    MetricRef("percentile", of=MetricRef("nps")),
    MetricRef("percentile", of=MetricRef("attributes", key="score", as_type=Type.NUMBER)),
    MetricRef("cumulative_share", of=MetricRef("monetary")),
    MetricRef("cumulative_share", of=MetricRef("monetary", window_days=30)),
    MetricRef("percentile", of=MetricRef("refund_rate")),
    MetricRef("cumulative_share", of=MetricRef("nps", window_days=30)),
]


@_SETTINGS
@given(people=st.lists(customers(), min_size=1, max_size=8))
async def test_population_scores_match_their_definition(
    engine: AsyncEngine, tenant: str, people: list[CustomerFacts]
) -> None:
    """SQL window-function scores equal a direct count (or sum) over the population in Python."""
    async with engine.connect() as connection:
        ids = await insert(connection, tenant, people)
        values = await rows(connection, metric_values_select(_POPULATION, sources(tenant), AS_OF))
        await connection.rollback()
    by_id = {row.customer_id: row[1:] for row in values}
    underlying = {
        "r_score": (MetricRef("recency"), 5, True),
        "f_score": (MetricRef("frequency"), 5, False),
        "m_score": (MetricRef("monetary"), 5, False),
    }
    for i, ref in enumerate(_POPULATION):
        base, buckets, descending = underlying.get(ref.name, (ref.of, 100, False))
        assert base is not None and CATALOG[ref.name]
        # Ranks of order metrics are over buyers (customers with a purchase before T).
        first = MetricRef("first_purchase")
        raw = {
            cid: None
            if ranks_buyers_only(base)
            and compute_metric_values([first], facts, AS_OF)[first] is None
            else compute_metric_values([base], facts, AS_OF)[base]
            for cid, facts in zip(ids, people, strict=True)
        }
        expected = (
            cumulative_share_py(raw)
            if ref.name == "cumulative_share"
            else population_py(raw, buckets, descending)
        )
        assert {cid: by_id[cid][i] for cid in ids} == expected, ref.text
        # Within the documented ranges, whatever the net amounts (refunds make them negative).
        top = 5 if ref.name.endswith("_score") else 100
        assert all(v is None or 1 <= v <= top for v in expected.values()), ref.text


@_SETTINGS
@given(
    expression=st.one_of(number_expressions(3), day_expressions()),
    people=st.lists(customers(), min_size=1, max_size=6),
)
async def test_arithmetic_gives_the_same_digits(
    engine: AsyncEngine, tenant: str, expression: str, people: list[CustomerFacts]
) -> None:
    """Arithmetic (quotients rounded, division by zero and nulls unknown, dates minus dates in
    days) has the same exact value in SQL and in process, not only the same tiers."""
    try:
        checked = check_condition(parse_condition(f"{expression} is null"))
    except RuleError:  # only constants: `is null` needs a metric
        assume(False)
        raise
    assert isinstance(checked, c.IsNull)
    refs = c.condition_refs(checked)
    metrics = metrics_relation(refs, sources(tenant), AS_OF)
    columns = {ref: metrics.c[f"m{i}"] for i, ref in enumerate(refs)}
    statement = select(metrics.c.customer_id, _operand(checked.operand, columns).label("v"))
    async with engine.connect() as connection:
        ids = await insert(connection, tenant, people)
        values = {row.customer_id: row.v for row in await rows(connection, statement)}
        await connection.rollback()
    for customer_id, facts in zip(ids, people, strict=True):
        mine = operand_value(checked.operand, compute_metric_values(refs, facts, AS_OF))
        theirs = values[customer_id]
        assert (mine is None) == (theirs is None), (expression, mine, theirs)
        assert mine is None or mine == theirs, (expression, mine, theirs)
