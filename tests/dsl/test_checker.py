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


def test_keep_is_checked_with_positions() -> None:
    """A bad `keep` is reported where it is written, every one of a file."""
    source = (
        "tier A when monetary > 5000 keep -90 days\n"
        "tier B when monetary > 2000 keep 90\n"
        "tier C when monetary > 1000 keep recency\n"
        "tier D when monetary > 500 keep 1.5 days\n"
        "tier E otherwise keep 30 days\n"
    )
    with pytest.raises(RuleError) as caught:
        check_text(source, "k.rules")
    found = [
        (d.line, d.column, d.code.value, d.message)
        for d in caught.value.diagnostics
        if d.code.value == "invalid-keep"
    ]
    assert found == [
        (1, 34, "invalid-keep", "a keep is a whole number of days from 1 day to 100 years"),
        (2, 34, "invalid-keep", "`keep` takes a duration: a number with its unit"),
        (
            3,
            34,
            "invalid-keep",
            "`keep` takes a duration written out, such as `90 days` or `3 months`",
        ),
        (4, 33, "invalid-keep", "a keep is a whole number of days from 1 day to 100 years"),
        (
            5,
            18,
            "invalid-keep",
            "an `otherwise` tier cannot keep its customers: it has no condition to stop holding",
        ),
    ]
    hint = next(d.hint for d in caught.value.diagnostics if d.line == 2)
    assert hint == "for example: keep 90 days"


def test_keep_in_days_weeks_and_months() -> None:
    scheme = check_text(
        "tier A when monetary > 5000 keep 90 days\n"
        "tier B when monetary > 2000 keep 2 weeks\n"
        "tier C when monetary > 1000 keep 3 months\n"
        "tier D when monetary > 100\n"
        "tier E otherwise\n"
    ).schemes[0]
    assert [t.keep_days for t in scheme.tiers] == [90, 14, 90, None, None]
