"""Lint warnings, and the conditions they must not warn about."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.checker import check_text
from dsl.evaluator import (
    CustomerFacts,
    compute_metric_values,
    evaluate,
    evaluate_condition,
    is_population,
)
from tests.dsl.strategies import KNOWN_TIERS, customers, schemes
from tests.dsl.support import AS_OF


def _warnings(text: str) -> list[str]:
    return [d.message for d in check_text(text).warnings]


def test_shadowed_by_a_union_of_earlier_tiers() -> None:
    messages = _warnings(
        "tier Low when monetary < 100\ntier High when monetary >= 100\n"
        "tier Never when monetary between 50 and 150 or monetary > 1000\n"
    )
    assert messages == [
        "tier `Never` can never match: every customer it would take is already taken by "
        "`Low` (line 1), `High` (line 2)"
    ]


def test_no_false_alarms() -> None:
    assert _warnings(
        'tier A when monetary > 100 and region = "north"\n'
        "tier B when monetary > 100\n"  # wider than A: can match
        "tier C when not (monetary > 100) and frequency > 1\n"
        "tier D when monetary > 5 and monetary != 7\n"
        "tier E when recency > 30 days\n"
        "tier F when recency > 30\n"  # same as E, but E is exact so F is shadowed
    ) == ["tier `F` can never match: every customer it would take is already taken by `E` (line 5)"]


def test_contradictions() -> None:
    assert _warnings('tier A when region = "x" and region in ["y", "z"]') == [
        "this condition can never be true"
    ]
    assert _warnings("tier A when frequency between 5 and 3 or frequency > 5 and frequency < 5")
    assert not _warnings("tier A when frequency >= 5 and frequency <= 5")


@settings(max_examples=150, deadline=None)
@given(rule=schemes(), people=st.lists(customers(), min_size=1, max_size=5), rank=st.integers(1, 5))
def test_warnings_are_never_wrong(rule: str, people: list[CustomerFacts], rank: int) -> None:
    """A tier reported as never matching never matches; a contradiction is never true."""
    result = check_text(rule, known_tiers=KNOWN_TIERS)
    scheme = result.schemes[0]
    dead = {w.line for w in result.warnings if "never" in w.message}
    population = {
        r: rank * (20 if r.name == "percentile" else 1) for r in scheme.refs if is_population(r)
    }
    for facts in people:
        values = compute_metric_values(scheme.refs, facts, AS_OF, population)
        winner = evaluate(scheme, values)
        for tier in scheme.tiers:
            if tier.span.line in dead and tier.condition is not None:
                assert winner != tier.name, rule
                contradiction = any(
                    w.line == tier.span.line and "can never be true" in w.message
                    for w in result.warnings
                )
                if contradiction:
                    assert evaluate_condition(tier.condition, values) is not True, rule
