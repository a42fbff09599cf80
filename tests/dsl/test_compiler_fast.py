"""The compiler's direct comparisons (`dsl.compiler._compare`) against SQLAlchemy's operators.

For `metric <op> value` the compiler builds the BinaryExpression itself instead of going through
SQLAlchemy's comparison operators; the statement must be the same either way: the same SQL text
and the same parameters, through `not` (which renders the negated operator) as well.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from sqlalchemy.dialects import postgresql

from benchmarks.bench_dsl import SOURCES, scheme_text
from dsl import compiler
from dsl.checker import check_condition, check_text
from dsl.compiler import compile_condition, compile_scheme
from dsl.errors import RuleError
from dsl.parser import parse_condition
from tests.dsl.golden_inputs import SEEDS
from tests.dsl.strategies import conditions, schemes
from tests.dsl.support import AS_OF, sources

_KNOWN = {"value": ["VIP", "Normal"], "a": ["B"]}


def _rendered(text: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    for scheme in check_text(text, known_tiers=_KNOWN).schemes:
        # Tenant-filtered subqueries, as the service reads, and the bare tables.
        for tables in (sources("t"), SOURCES):
            compiled = compile_scheme(scheme, tables, AS_OF).compile(dialect=postgresql.dialect())
            out.append((str(compiled), compiled.params))
    return out


def _both(text: str) -> None:
    direct = _rendered(text)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(compiler, "_is_stock", lambda column: False)  # SQLAlchemy's operators
        assert _rendered(text) == direct


def test_the_direct_path_is_taken() -> None:
    compiler._STOCK.clear()
    _rendered(scheme_text())
    assert any(compiler._STOCK.values())


def test_benchmark_and_golden_schemes() -> None:
    for text in [scheme_text(), *SEEDS]:
        try:
            check_text(text, known_tiers=_KNOWN)
        except RuleError:  # the golden files of errors
            continue
        _both(text)


def test_negated_and_mirrored_comparisons() -> None:
    _both(
        "tier A when not (monetary > 5) and not (frequency = 2 or nps != 3)\n"
        "tier B when 5 < monetary and not (2026-01-01 >= first_purchase)\n"
        'tier C when not (region = "x") and attributes.plan != "gold" and attributes.n <= 3\n'
        "tier D when not (attributes.flag = true) and recency >= 30 and tenure < 4 weeks\n"
        "tier E when monetary > frequency and not (average_order_value <= monetary)\n"
        'tier F when monetary(category "books", 30 days) > 5 and frequency(channel "web") >= 1\n'
        'tier G when days_since(event "login") > 30 days and in tier value.VIP\n'
        "tier H when percentile(monetary(365 days)) > 80 and not (nps(90 days) >= 6)\n"
        "tier I otherwise\n"
    )


@settings(max_examples=200, deadline=None)
@given(schemes())
def test_generated_schemes(text: str) -> None:
    _both(text)


@settings(max_examples=200, deadline=None)
@given(conditions())
def test_generated_conditions(text: str) -> None:
    def rendered() -> tuple[str, dict[str, object]]:
        condition = check_condition(parse_condition(text), known_tiers=_KNOWN)
        compiled = compile_condition(condition, sources("t"), AS_OF).compile(
            dialect=postgresql.dialect()
        )
        return str(compiled), compiled.params

    direct = rendered()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(compiler, "_is_stock", lambda column: False)
        assert rendered() == direct
