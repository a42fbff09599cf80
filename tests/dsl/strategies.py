"""Hypothesis strategies: random customers and random rules over the whole catalog."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

from hypothesis import assume
from hypothesis import strategies as st

from dsl.catalog import DAYS_PER_UNIT
from dsl.evaluator import CustomerFacts, Event, Order
from dsl.grammar import KEYWORDS
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
def with_refunds(draw: st.DrawFn, orders: list[Order]) -> list[Order]:
    """The orders with ids `o0`, `o1`, ...; some cancelled, some refunds of others (the
    amount negative, as stored), in part or in full."""
    ids = [f"o{k}" for k in range(len(orders))]
    out = []
    for k, order in enumerate(orders):
        status = draw(st.sampled_from(["completed", "completed", "completed", "cancelled"]))
        refund_of = draw(st.none() | st.none() | st.sampled_from(ids)) if ids else None
        if refund_of == ids[k]:
            refund_of = None
        amount = -abs(order.amount) if refund_of is not None else order.amount
        original = order.original_amount
        if original is not None and refund_of is not None:
            original = -abs(original)
        out.append(
            replace(
                order,
                amount=amount,
                original_amount=original,
                status=status,
                order_id=ids[k],
                refund_of=refund_of,
            )
        )
    return out


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
                st.sampled_from([None, "EUR", "USD"]),
            ),
            max_size=5,
        )
    )
    # Orders in dollars were converted: their original amounts differ from the stored ones.
    orders = [
        replace(o, original_amount=(o.amount * 2 + 1 if o.amount >= 0 else o.amount * 2))
        if o.currency == "USD"
        else o
        for o in orders
    ]
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
    return CustomerFacts(
        profile, draw(with_refunds(orders)), events, {"value": tier} if tier else {}
    )


NUMBER_METRICS = [
    ("frequency", [0, 1, 2, 3]),
    ("frequency(30 days)", [0, 1, 2]),
    ('frequency(category "books", 2 months)', [0, 1]),
    ("monetary", [0, 100, 1500, "2000.5"]),
    ("monetary(90 days)", [0, 500, 3000]),
    ('monetary(channel "web")', [0, 1000]),
    ('monetary(currency "USD")', [0, 1000, "2000.5"]),
    ('average_order_value(currency "EUR", 1 year)', ["500"]),
    ('refunds(currency "USD", 90 days)', [0, 100]),
    ("average_order_value", ["500", "33.3333", "1000.00005"]),
    ("average_order_value(1 year)", ["750.5", "0"]),
    ("refunds", [0, 100, "10.005"]),
    ("refunds(90 days)", [0, 500]),
    ("returns", [0, 1, 2]),
    ('returns(category "books", 30 days)', [0, 1]),
    ("refund_rate", [0, "0.25", 1]),
    ("refund_rate(90 days)", ["0.5"]),
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
    ("percentile(refunds)", [50]),
    ("cumulative_share(monetary(30 days))", [50, 100]),
    ("attributes.score", [0, 5, "2.5"]),
    ("monetary(90 days, 90 days ago)", [0, 500, 3000]),
    ("frequency(30 days, 30 days ago)", [0, 1]),
    ('count(event "login", 30 days, 60 days ago)', [0, 1]),
    ("average_order_value(1 year, 1 year ago)", ["750.5"]),
    ("nps(30 days ago)", [6]),
    ("largest_order", [0, 500, "1000.5"]),
    ('largest_order(currency "USD", 90 days)', [100]),
    ("largest_order(1 year, 1 year ago)", [500]),
    ("categories", [0, 1, 2]),
    ("categories(90 days)", [1]),
    ('categories(channel "web")', [1, 2]),
]
DAY_METRICS = [
    ("recency", [0, 1, 30, 90]),
    ("tenure", [0, 30, 200]),
    ('days_since(event "login")', [1, 60]),
    ('recency(category "toys")', [10, 100]),
    ("recency(30 days ago)", [10, 100]),
    ('days_since(event "login", 60 days ago)', [1, 60]),
    ("purchase_interval", [0, 10, "30.5"]),
    ("purchase_interval(1 year)", [20]),
    ('purchase_interval(category "books")', [5]),
    ("days_since_first_purchase", [0, 30, 200]),
    ("days_since_first_purchase(90 days, 30 days ago)", [10]),
]
TEXT_METRICS = [
    ("region", ["north", "east", "北方"]),
    ("gender", ["female"]),
    ("attributes.plan", ["gold", "silver", ""]),
]
TIME_METRICS = ["first_purchase", "last_purchase", "registered_at", "last_purchase(90 days ago)"]
OPS = ["=", "!=", "<", "<=", ">", ">="]
_NUMBER_OPERANDS = [
    "monetary",
    "monetary(90 days)",
    "monetary(90 days, 90 days ago)",
    "frequency",
    "frequency(30 days)",
    "frequency(90 days, 90 days ago)",
    "average_order_value",
    "nps",
    "attributes.score",
    "0",
    "3",
    "0.5",
    "-2.25",
    "7",
    "0.0000001",
]
_DAY_OPERANDS = [
    "recency",
    "tenure",
    "recency(90 days ago)",
    'days_since(event "login")',
    "last_purchase - first_purchase",
    "registered_at - 2026-01-01",
    "30 days",
    "1 week",
]


def number_expressions(depth: int = 2) -> st.SearchStrategy[str]:
    """Arithmetic over numeric metrics and constants: zero divisors, rounding, nulls."""
    return st.recursive(
        st.sampled_from(_NUMBER_OPERANDS),
        lambda inner: st.tuples(inner, st.sampled_from("+-*/"), inner).map(
            lambda p: f"({p[0]} {p[1]} {p[2]})"
        ),
        max_leaves=depth * 2,
    )


@st.composite
def day_expressions(draw: st.DrawFn) -> str:
    """Arithmetic whose result is days: days +- days, days * or / a number, a date minus a date."""
    left = draw(st.sampled_from(_DAY_OPERANDS[:6]))
    op = draw(st.sampled_from(["+", "-", "*", "/", "/ days"]))
    if op in ("+", "-"):
        return f"{left} {op} ({draw(st.sampled_from([*_DAY_OPERANDS, '7']))})"
    if op == "/ days":
        return f"({left}) / ({draw(st.sampled_from(_DAY_OPERANDS))}) * 10 days"
    return f"({left}) {op} {draw(number_expressions(1))}"


@st.composite
def atoms(draw: st.DrawFn) -> str:
    kind = draw(
        st.sampled_from(
            [
                *("number", "number", "days", "text", "time", "null", "tier", "between", "in"),
                *("attr", "arith", "arith", "arith_days"),
            ]
        )
    )
    if kind == "arith":
        right = draw(st.sampled_from(["0", "1", "100", "0.5", "-3", "33.3333333333"]))
        if draw(st.booleans()):
            right = draw(number_expressions(1))
        metric = draw(st.sampled_from(_NUMBER_OPERANDS[:9]))
        left = f"{metric} {draw(st.sampled_from('+-*/'))} {draw(number_expressions())}"
        return f"{left} {draw(st.sampled_from(OPS))} {right}"
    if kind == "arith_days":
        value = draw(st.sampled_from(["0", "30 days", "-5", "1 year"]))
        return f"{draw(day_expressions())} {draw(st.sampled_from(OPS))} {value}"
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
    """A scheme of random tiers; maybe with definitions (a value, a condition, one using the
    other) at the top of the file or of the block, and a tier that uses them."""
    tiers = draw(st.lists(conditions(), min_size=1, max_size=4))
    lines = [f"tier T{i} when {condition}" for i, condition in enumerate(tiers)]
    head: list[str] = []
    defines: list[str] = []
    if draw(st.booleans()):
        metric = draw(st.sampled_from(_NUMBER_OPERANDS[:9]))
        op = draw(st.sampled_from("+-*/"))
        defines = [
            f"define amount = {metric} {op} {draw(number_expressions())}",
            f"define held = {draw(conditions(1))}",
            f"define both = held and amount {draw(st.sampled_from(OPS))} "
            f"{draw(st.sampled_from(['0', '1', '0.5', '100']))}",
        ]
        use = draw(st.sampled_from(["both", "held or amount > 10", "not both", "amount is null"]))
        lines.insert(draw(st.integers(0, len(lines))), f"tier D when {use}")
    if draw(st.booleans()):
        lines.append("tier Rest otherwise")
    if draw(st.booleans()):
        head = defines
    else:
        lines = defines + lines
    return "\n".join([*head, "scheme s {", *lines, "}"]) + "\n"


# Rule files over the whole grammar, for properties of the syntax (the formatter's round trip):
# random names in many scripts (combining marks, decomposed accents, joiners), any text, numbers
# of every size and shape, all kinds of conditions, comments and spacing. Metric names are
# random too, so most files would not pass the checker: they only need to parse.

_LETTERS = "abcxyzABZ_éßøπжλ北方客户ลกคسنअकग"
_MARKS = "\u0301\u0308\u0327\u093e\u093f\u0947\u094d\u0902\u0e39\u0e49\u0e31\u064e"
_WORD = _LETTERS + _MARKS + "0129٣\u200c\u200d"


@st.composite
def names(draw: st.DrawFn) -> str:
    """A name as the grammar reads one: a letter, then letters, marks and digits."""
    first = draw(st.sampled_from(_LETTERS))
    name = first + draw(st.text(_WORD, max_size=8))
    assume(name not in KEYWORDS and not name.startswith("attributes"))
    return name


def quoted(text: str) -> str:
    """`text` in double quotes, escaped as the grammar reads it (independent of dsl.catalog)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


texts = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """A number literal: a sign, up to 30 digits around an optional point, with leading and
    trailing zeros, from 0.0000001 to 30-digit integers."""
    whole = draw(st.text("0123456789", min_size=1, max_size=15))
    fraction = draw(st.none() | st.text("0123456789", min_size=1, max_size=15))
    sign = draw(st.sampled_from(["", "", "-"]))
    return sign + whole + ("" if fraction is None else "." + fraction)


dates = st.dates().map(lambda d: d.isoformat())
durations = st.tuples(numbers(), st.sampled_from(sorted(DAYS_PER_UNIT))).flatmap(
    lambda p: st.sampled_from([f"{p[0]} {p[1]}", f"{p[0]} {p[1]}s"])
)
literals = st.one_of(
    numbers(), texts.map(quoted), dates, st.sampled_from(["true", "false"]), durations
)


@st.composite
def metrics(draw: st.DrawFn, depth: int = 2) -> str:
    name = draw(names())
    if draw(st.booleans()):
        return name
    kinds = ["window", "ago", "keyword"] + (["metric"] if depth else [])
    args = []
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3)):
        if kind == "window":
            args.append(draw(durations))
        elif kind == "ago":
            args.append(draw(durations) + " ago")
        elif kind == "keyword":
            keyword = draw(st.sampled_from(["event", "category", "channel"]))
            args.append(f"{keyword} {quoted(draw(texts))}")
        else:
            args.append(draw(metrics(depth - 1)))
    return f"{name}({', '.join(args)})"


simple_operands = st.one_of(metrics(), names().map(lambda n: f"attributes.{n}"), literals)
operands = st.recursive(
    simple_operands,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", " - ", "*"]), inner).map(
            lambda p: f"{p[0]} {p[1].strip()} {p[2]}"
        ),
        inner.map(lambda x: f"({x})"),
    ),
    max_leaves=4,
)


@st.composite
def predicates(draw: st.DrawFn) -> str:
    left = draw(operands)
    neg = draw(st.sampled_from(["", "not "]))
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return f"{left} {draw(st.sampled_from(OPS))} {draw(operands)}"
    if kind == 1:
        return f"{left} {neg}between {draw(operands)} and {draw(operands)}"
    if kind == 2:
        items = draw(st.lists(literals, min_size=1, max_size=3))
        return f"{left} {neg}in [{', '.join(items)}]"
    if kind == 3:
        return f"{left} {neg}{draw(st.sampled_from(['contains', 'starts with']))} {draw(operands)}"
    if kind == 4:
        return f"{left} is {neg}null"
    if kind == 5:
        return draw(operands)  # a defined condition's name, or any value: only needs to parse
    tier = draw(st.one_of(names(), texts.filter(str.strip).map(quoted)))
    return f"in tier {draw(names())}.{tier}"


def syntax_conditions() -> st.SearchStrategy[str]:
    return st.recursive(
        predicates(),
        lambda inner: st.one_of(
            st.tuples(inner, inner, st.sampled_from([" and ", " or "])).map(
                lambda p: f"{p[0]}{p[2]}{p[1]}"
            ),
            st.tuples(inner, inner, st.sampled_from([" and ", " or "])).map(
                lambda p: f"({p[0]}{p[2]}{p[1]})"
            ),
            inner.map(lambda x: f"not ({x})"),
            inner.map(lambda x: f"not {x}" if x.startswith(("(", "in tier", "not")) else x),
        ),
        max_leaves=6,
    )


@st.composite
def comments(draw: st.DrawFn) -> str:
    return "#" + draw(texts.map(lambda s: s.replace("\n", " ").replace("\r", " ")))


@st.composite
def tier_lines(draw: st.DrawFn) -> str:
    name = draw(st.one_of(names(), texts.filter(str.strip).map(quoted)))
    rule = draw(st.none() | syntax_conditions())
    line = f"tier {name} otherwise" if rule is None else f"tier {name} when {rule}"
    if draw(st.booleans()):
        # `keep` parses after any tier (the checker refuses it after `otherwise`).
        unit = draw(st.sampled_from(["day", "days", "weeks", "month", "years"]))
        line += f" keep {draw(numbers())} {unit}"
    if draw(st.booleans()):
        line += draw(st.sampled_from(["  ", " ", "\t"])) + draw(comments())
    return line


@st.composite
def define_lines(draw: st.DrawFn) -> str:
    body = draw(st.one_of(operands, syntax_conditions()))
    line = f"define {draw(names())} = {body}"
    if draw(st.booleans()):
        line += " " + draw(comments())
    return line


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    """A rule file that parses: a bare list of tiers, or scheme blocks, with comments and
    definitions (at the top, and at the top of blocks)."""

    def block() -> list[str]:
        lines = draw(st.lists(define_lines(), max_size=2))
        lines += draw(st.lists(st.one_of(tier_lines(), comments()), max_size=4))
        return [draw(st.sampled_from(["", "  ", "\t"])) + line for line in lines]

    shared = draw(st.lists(define_lines(), max_size=2))
    if draw(st.booleans()):
        return "\n".join(shared + block()) + draw(st.sampled_from(["", "\n"]))
    out = shared
    for _ in range(draw(st.integers(1, 2))):
        title = draw(st.none() | texts.map(quoted))
        out.append(f"scheme {draw(names())}{'' if title is None else ' ' + title} {{")
        out.extend(block())
        out.append("}")
    return "\n".join(out) + "\n"
