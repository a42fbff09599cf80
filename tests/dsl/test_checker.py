"""The checker's API: bare conditions, cross-scheme references, lints, warnings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl.catalog import MetricRef, Type
from dsl.checker import check_condition, check_text
from dsl.compiler import compile_condition
from dsl.errors import RuleError
from dsl.evaluator import CustomerFacts, Order, compute_metric_values, evaluate_condition
from dsl.parser import parse_condition
from tests.dsl.support import AS_OF, insert, rows, sources


def test_refs_and_dependencies() -> None:
    scheme = check_text(
        'scheme s {\n tier A when monetary(6 months) > 1 and attributes.plan = "x"'
        " and in tier value.VIP\n}",
        known_tiers={"value": ["VIP"]},
    ).schemes[0]
    assert scheme.refs == (
        MetricRef("monetary", window_days=180),
        MetricRef("attributes", key="plan", as_type=Type.TEXT),
        MetricRef("in tier", scheme="value", tier="VIP"),
    )
    assert scheme.depends_on == frozenset({"value"})
    assert scheme.refs[0].text == "monetary(180 days)"


def test_cycles_through_known_schemes_are_rejected() -> None:
    with pytest.raises(RuleError) as caught:
        from dsl.checker import check
        from dsl.parser import parse_rules

        check(
            parse_rules("scheme a {\n tier X when in tier b.Y\n}", "a.rules"),
            known_tiers={"b": ["Y"]},
            known_dependencies={"b": ["a"]},
        )
    assert "cycle: a → b → a" in caught.value.diagnostics[0].message


def test_all_errors_of_a_file_are_reported() -> None:
    with pytest.raises(RuleError) as caught:
        check_text("tier A when monetory > 1\ntier B when region > 5\n")
    assert [d.line for d in caught.value.diagnostics] == [1, 2]


async def test_where_condition_on_postgres(engine: AsyncEngine, tenant: str) -> None:
    condition = check_condition(parse_condition('monetary > 1000 and region = "east"'))
    people = [
        CustomerFacts({"region": "east"}, [Order(Decimal(1500), AS_OF - dt.timedelta(days=1))]),
        CustomerFacts({"region": "west"}, [Order(Decimal(1500), AS_OF - dt.timedelta(days=1))]),
        CustomerFacts({"region": "east"}),
    ]
    async with engine.connect() as connection:
        ids = await insert(connection, tenant, people)
        found = await rows(connection, compile_condition(condition, sources(tenant), AS_OF))
        await connection.rollback()
    assert [r.customer_id for r in found] == [ids[0]]
    refs = [MetricRef("monetary"), MetricRef("region")]
    in_process = [
        evaluate_condition(condition, compute_metric_values(refs, p, AS_OF)) for p in people
    ]
    assert in_process == [True, False, False]


def test_bare_condition_errors_have_positions() -> None:
    with pytest.raises(RuleError) as caught:
        check_condition(parse_condition("monetary >"))
    assert caught.value.diagnostics[0].column == 11


def test_evaluation_order_puts_dependencies_first() -> None:
    from dsl.checker import evaluation_order

    text = (
        "scheme c {\n tier X when in tier b.Y\n}\n"
        "scheme b {\n tier Y when in tier a.Z\n}\n"
        "scheme a {\n tier Z when frequency > 1\n}\n"
    )
    schemes = check_text(text).schemes
    assert [s.key for s in evaluation_order(schemes)] == ["a", "b", "c"]
