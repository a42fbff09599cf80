"""Explain: the trace a frontend shows for "why is this customer VIP?"."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from dsl.checker import check_text
from dsl.evaluator import CustomerFacts, Kept, Order, compute_metric_values
from dsl.explain import explain
from tests.dsl.support import AS_OF

RULES = """
scheme value {
  tier VIP    when monetary(365 days) > 5000 and frequency(30 days) >= 2
  tier Lapsed when recency > 90 days or region in ["north", "west"]
  tier Normal otherwise
}
"""


def test_trace_of_every_tier_and_clause() -> None:
    scheme = check_text(RULES).schemes[0]
    facts = CustomerFacts(
        {"region": None},
        [Order(Decimal("6000.50"), AS_OF - dt.timedelta(days=100))],
    )
    result = explain(scheme, compute_metric_values(scheme.refs, facts, AS_OF))
    assert (result.tier, result.tier_index) == ("Lapsed", 1)
    vip, lapsed, normal = result.tiers
    assert (vip.result, vip.matched) == ("false", False)
    assert vip.clause is not None
    spend, orders = vip.clause.children
    assert (spend.metric, spend.actual, spend.operator, spend.expected, spend.result) == (
        "monetary(365 days)",
        "6000.50",
        ">",
        "5000",
        "true",
    )
    assert spend.unit == "currency"
    # Values keep their type and unit: a count and its bound are numbers, like days.
    assert (orders.metric, orders.actual, orders.expected, orders.unit, orders.result) == (
        "frequency(30 days)",
        0,
        2,
        "orders",
        "false",
    )
    assert lapsed.matched and lapsed.clause is not None
    recency, region = lapsed.clause.children
    assert (recency.actual, recency.expected, recency.unit, recency.result) == (
        100,
        90,
        "days",
        "true",
    )
    assert (region.actual, region.operator, region.expected, region.result) == (
        None,
        "in",
        ["north", "west"],
        "unknown",
    )
    assert (normal.result, normal.matched) == ("otherwise", False)
    json.dumps(result.to_json())  # JSON-friendly all the way down


def test_no_tier() -> None:
    scheme = check_text("tier VIP when monetary > 5000").schemes[0]
    result = explain(scheme, compute_metric_values(scheme.refs, CustomerFacts({}), AS_OF))
    assert result.tier is None and result.tiers[0].result == "false"


BASKETS = """
define aov90 = monetary(90 days) / frequency(90 days)
define active = frequency(90 days) >= 1
define unused = frequency > 100

scheme basket {
  define before = monetary(90 days, 90 days ago)
  tier Big       when active and aov90 > 200
  tier Declining when monetary(90 days) < 0.5 * before
  tier Other     otherwise
}
"""


def test_definitions_with_their_values() -> None:
    """Explain lists the definitions the scheme uses (not the others), each with its value or
    outcome for the customer; windows ending in the past and quotients are exact."""
    scheme = check_text(BASKETS).schemes[0]
    facts = CustomerFacts(
        {},
        [
            Order(Decimal("100"), AS_OF - dt.timedelta(days=10)),
            Order(Decimal("50"), AS_OF - dt.timedelta(days=20)),
            Order(Decimal("1000"), AS_OF - dt.timedelta(days=120)),  # in [T-180 d, T-90 d)
            Order(Decimal("7"), AS_OF - dt.timedelta(days=180, microseconds=1)),  # before it
        ],
    )
    result = explain(scheme, compute_metric_values(scheme.refs, facts, AS_OF))
    assert result.tier == "Declining"
    assert [(d.name, d.text, d.value, d.result) for d in result.definitions] == [
        ("aov90", "monetary(90 days) / frequency(90 days)", "75.0000000000", None),
        ("active", "frequency(90 days) >= 1", None, "true"),
        ("before", "monetary(90 days, 90 days ago)", "1000", None),
    ]
    big, declining, _ = result.tiers
    assert big.result == "false"
    assert declining.clause is not None
    assert (declining.clause.actual, declining.clause.expected) == ("150", "500.0")
    json.dumps(result.to_json())


def test_division_by_zero_is_unknown() -> None:
    scheme = check_text(BASKETS).schemes[0]
    result = explain(scheme, compute_metric_values(scheme.refs, CustomerFacts({}), AS_OF))
    assert result.definitions[0].value is None
    assert result.tier == "Other"


def test_bounds_keep_the_type_and_unit_of_what_they_bound() -> None:
    """`tenure < 90 days` showed `expected: "90"`, a string without its unit, beside the
    customer's tenure as a number of days."""
    rules = (
        "tier A when tenure < 2 weeks and recency between 1 and 30 days"
        " and monetary > 5000.50 and 3 <= frequency"
    )
    scheme = check_text(rules).schemes[0]
    facts = CustomerFacts({}, [Order(Decimal("10"), AS_OF - dt.timedelta(days=40))])
    clause = explain(scheme, compute_metric_values(scheme.refs, facts, AS_OF)).tiers[0].clause
    assert clause is not None
    traced = [(x.actual, x.operator, x.expected, x.unit) for x in clause.children]
    assert traced == [
        (40, "<", 14, "days"),
        (40, "between", [1, 30], "days"),
        ("10", ">", "5000.50", "currency"),
        (1, ">=", 3, "orders"),
    ]
    # A quotient of days is a decimal: its bound is shown as one too.
    scheme = check_text("tier A when recency / 3 > 10 days").schemes[0]
    clause = explain(scheme, compute_metric_values(scheme.refs, facts, AS_OF)).tiers[0].clause
    assert clause is not None
    assert (clause.actual, clause.expected, clause.unit) == ("13.3333333333", "10", "days")


def test_a_kept_tier_says_when_its_member_last_qualified_and_until_when() -> None:
    scheme = check_text(
        "tier Gold when monetary(365 days) >= 10000 keep 90 days\ntier Member otherwise"
    ).schemes[0]
    values = compute_metric_values(scheme.refs, CustomerFacts({}), AS_OF)
    qualified = AS_OF - dt.timedelta(days=30)
    kept = explain(scheme, values, Kept("Gold", qualified), AS_OF)
    assert kept.tier == "Gold"
    gold = kept.tiers[0]
    assert (gold.result, gold.matched) == ("false", True)
    until = (qualified + dt.timedelta(days=90)).date()
    assert gold.kept == f"kept: qualified last on {qualified.date()}, held until {until}"
    # Longer ago than the keep: the next tier takes them; a non-member is never kept.
    lapsed = Kept("Gold", AS_OF - dt.timedelta(days=91))
    for other in (explain(scheme, values, lapsed, AS_OF), explain(scheme, values)):
        assert other.tier == "Member"
        assert other.tiers[0].kept is None
