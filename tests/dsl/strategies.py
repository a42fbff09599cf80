"""Hypothesis strategies: random customers and random rules over the whole catalog."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import strategies as st

from dsl.evaluator import CustomerFacts, Event, Order
from tests.dsl.support import AS_OF

KNOWN_TIERS = {"value": ["VIP", "Normal"]}


@st.composite
def moments(draw: st.DrawFn) -> dt.datetime:
    """Times around T, with exact day boundaries and microseconds either side of them."""
    days = draw(st.integers(-2, 400))
    seconds = draw(st.sampled_from([0, 0, 1, 43_200, 86_399]))
    micro = draw(st.sampled_from([0, 0, 1, 999_999]))
    return AS_OF - dt.timedelta(days=days, seconds=seconds, microseconds=micro)


amounts = st.decimals(min_value=0, max_value=3000, places=4) | st.sampled_from(
    [Decimal("0.0001"), Decimal("33.3333"), Decimal("0.0005"), Decimal("-10.0050")]
)

attribute_values = st.sampled_from(
    ["gold", "silver", "", 5, 0, Decimal("2.5"), True, False, None, {"x": 1}, [1]]
)


@st.composite
def customers(draw: st.DrawFn) -> CustomerFacts:
    profile: dict[str, object] = {
        "age": draw(st.sampled_from([None, 18, 30, 45, 70])),
        "region": draw(st.sampled_from([None, "north", "east", "south", "west", "北方"])),
        "gender": draw(st.sampled_from([None, "female", "male"])),
        "registered_at": draw(st.none() | moments()),
        "attributes": draw(st.dictionaries(st.sampled_from(["plan", "score"]), attribute_values)),
    }
    orders = draw(
        st.lists(
            st.builds(
                Order,
                amounts,
                moments(),
                st.sampled_from([None, "books", "toys"]),
                st.sampled_from([None, "web", "shop"]),
            ),
            max_size=5,
        )
    )
    events = draw(
        st.lists(
            st.builds(
                Event,
                st.sampled_from(["complaint", "nps", "login"]),
                moments(),
                st.none() | st.integers(0, 10).map(Decimal),
            ),
            max_size=4,
        )
    )
    tier = draw(st.sampled_from([None, "VIP", "Normal"]))
    return CustomerFacts(profile, orders, events, {"value": tier} if tier else {})


NUMBER_METRICS = [
    ("frequency", [0, 1, 2, 3]),
    ("frequency(30 days)", [0, 1, 2]),
    ('frequency(category "books", 2 months)', [0, 1]),
    ("monetary", [0, 100, 1500, "2000.5"]),
    ("monetary(90 days)", [0, 500, 3000]),
    ('monetary(channel "web")', [0, 1000]),
    ("average_order_value", ["500", "33.3333", "1000.00005"]),
    ("average_order_value(1 year)", ["750.5", "0"]),
    ('count(event "complaint", 90 days)', [0, 1, 2]),
    ('count(event "login")', [0, 1]),
    ("nps", [0, 6, 9]),
    ("nps(30 days)", [6]),
    ("age", [18, 30, 50]),
    ("r_score", [1, 3, 5]),
    ("f_score", [2, 4]),
    ("m_score", [1, 5]),
    ("percentile(monetary)", [20, 50, 80]),
    ("percentile(recency)", [50]),
    ("cumulative_share(monetary)", [50, 80, 95]),
    ("cumulative_share(frequency(90 days))", [80]),
    ("attributes.score", [0, 5, "2.5"]),
]
DAY_METRICS = [
    ("recency", [0, 1, 30, 90]),
    ("tenure", [0, 30, 200]),
    ('days_since(event "login")', [1, 60]),
    ('recency(category "toys")', [10, 100]),
]
TEXT_METRICS = [
    ("region", ["north", "east", "北方"]),
    ("gender", ["female"]),
    ("attributes.plan", ["gold", "silver", ""]),
]
TIME_METRICS = ["first_purchase", "last_purchase", "registered_at"]
OPS = ["=", "!=", "<", "<=", ">", ">="]


@st.composite
def atoms(draw: st.DrawFn) -> str:
    kind = draw(
        st.sampled_from(
            ["number", "number", "days", "text", "time", "null", "tier", "between", "in", "attr"]
        )
    )
    if kind == "number":
        name, values = draw(st.sampled_from(NUMBER_METRICS))
        return f"{name} {draw(st.sampled_from(OPS))} {draw(st.sampled_from(values))}"
    if kind == "days":
        name, values = draw(st.sampled_from(DAY_METRICS))
        unit = draw(st.sampled_from(["days", "", "weeks"]))
        value = draw(st.sampled_from(values))
        return f"{name} {draw(st.sampled_from(OPS))} {value} {unit}".rstrip()
    if kind == "text":
        name, values = draw(st.sampled_from(TEXT_METRICS))
        value = draw(st.sampled_from(values))
        form = draw(st.sampled_from(["=", "!=", "contains", "starts with", "not contains"]))
        return f'{name} {form} "{value}"'
    if kind == "time":
        name = draw(st.sampled_from(TIME_METRICS))
        day = draw(st.sampled_from(["2025-06-01", "2026-05-01", "2026-06-01"]))
        return f"{name} {draw(st.sampled_from(OPS))} {day}"
    if kind == "null":
        name = draw(
            st.sampled_from(
                ["recency", "nps", "region", "attributes.plan", "tenure", "average_order_value"]
            )
        )
        return f"{name} is {draw(st.sampled_from(['', 'not ']))}null"
    if kind == "tier":
        return f"in tier value.{draw(st.sampled_from(['VIP', 'Normal']))}"
    if kind == "between":
        name, values = draw(st.sampled_from(NUMBER_METRICS + DAY_METRICS))
        low, high = draw(st.sampled_from(values)), draw(st.sampled_from(values))
        negated = draw(st.sampled_from(["", "not "]))
        return f"{name} {negated}between {low} and {high}"
    if kind == "in":
        name, values = draw(st.sampled_from(TEXT_METRICS + NUMBER_METRICS))
        items = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
        shown = ", ".join(f'"{v}"' if (name, values) in TEXT_METRICS else str(v) for v in items)
        return f"{name} {draw(st.sampled_from(['', 'not ']))}in [{shown}]"
    value = draw(st.sampled_from(['"gold"', "5", "2.5", "true", "false"]))
    return f"attributes.plan {draw(st.sampled_from(['=', '!=']))} {value}"


def conditions(depth: int = 3) -> st.SearchStrategy[str]:
    return st.recursive(
        atoms(),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda p: f"({p[0]} and {p[1]})"),
            st.tuples(inner, inner).map(lambda p: f"({p[0]} or {p[1]})"),
            inner.map(lambda x: f"not ({x})"),
        ),
        max_leaves=depth * 2,
    )


@st.composite
def schemes(draw: st.DrawFn) -> str:
    tiers = draw(st.lists(conditions(), min_size=1, max_size=4))
    lines = [f"tier T{i} when {condition}" for i, condition in enumerate(tiers)]
    if draw(st.booleans()):
        lines.append("tier Rest otherwise")
    return "scheme s {\n" + "\n".join(lines) + "\n}\n"
