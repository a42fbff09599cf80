"""In-process evaluation for one customer: the same answers as the compiled SQL.

Missing values follow SQL's three-valued logic: `None` is unknown; `not unknown` is unknown;
a tier takes a customer only when its condition is true.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import assert_never

from dsl import checked as c
from dsl.catalog import CATALOG, MetricRef, Source, Value, arith_py

Truth = bool | None
Values = Mapping[MetricRef, Value]


@dataclass(frozen=True)
class Order:
    """One of a customer's orders: the fields of a row of the orders table (`order_id` is its
    external id, which refunds name in `refund_of`)."""

    amount: Decimal
    ordered_at: dt.datetime
    category: str | None = None
    channel: str | None = None
    currency: str | None = None
    status: str = "completed"
    order_id: str | None = None
    refund_of: str | None = None
    original_amount: Decimal | None = None
    """The amount in the order's own `currency` (`amount` is in the reporting currency);
    None: the same as `amount`."""


@dataclass(frozen=True)
class Event:
    """One of a customer's behaviour events (`value`: an NPS answer, say): the fields of a row
    of the events table."""

    type: str
    occurred_at: dt.datetime
    value: Decimal | None = None


@dataclass(frozen=True)
class Prediction:
    """One customer's predictions from their tenant's current model (`catalog.PredictionFact`):
    floats as the model computes them, expected orders and CLV by horizon in days."""

    p_alive: float
    expected_order_value: float | None
    expected_orders: Mapping[int, float]
    clv: Mapping[int, float] | None


@dataclass(frozen=True)
class CustomerFacts:
    """One customer's data. `profile` has the profile fields and `attributes` (decode JSON
    with `parse_float=Decimal` to keep numbers exact); `memberships` maps scheme to tier;
    `prediction` is what the tenant's current model predicts for them (None: no model, or no
    orders)."""

    profile: Mapping[str, object]
    orders: Sequence[Order] = ()
    events: Sequence[Event] = ()
    memberships: Mapping[str, str] = field(default_factory=dict)
    prediction: Prediction | None = None


class _Facts:
    """`catalog.PyContext` over one customer's facts."""

    def __init__(
        self, facts: CustomerFacts, as_of: dt.datetime, population: Mapping[MetricRef, Value]
    ) -> None:
        self.facts = facts
        self._as_of = as_of
        self._population = population

    @property
    def profile(self) -> Mapping[str, object]:
        return self.facts.profile

    @property
    def as_of(self) -> dt.datetime:
        return self._as_of

    def end(self, ref: MetricRef) -> dt.datetime:
        if ref.ago_days is None:
            return self._as_of
        return self._as_of - dt.timedelta(days=ref.ago_days)

    def _start(self, ref: MetricRef) -> dt.datetime | None:
        if ref.window_days is None:
            return None
        return self._as_of - dt.timedelta(days=ref.window_days + (ref.ago_days or 0))

    def orders(self, ref: MetricRef) -> Sequence[Order]:
        start, end = self._start(ref), self.end(ref)
        chosen = [
            o
            for o in self.facts.orders
            if o.ordered_at < end
            and (start is None or o.ordered_at >= start)
            and (ref.category is None or o.category == ref.category)
            and (ref.channel is None or o.channel == ref.channel)
            and (ref.currency is None or o.currency == ref.currency)
        ]
        if ref.currency is None:
            return chosen
        # Orders of one currency are summed in it: their original amounts.
        return [
            replace(o, amount=o.amount if o.original_amount is None else o.original_amount)
            for o in chosen
        ]

    def events(self, ref: MetricRef) -> Sequence[Event]:
        start, end = self._start(ref), self.end(ref)
        kind = ref.event or "nps"
        return [
            e
            for e in self.facts.events
            if e.type == kind and e.occurred_at < end and (start is None or e.occurred_at >= start)
        ]

    def membership(self, scheme: str) -> str | None:
        return self.facts.memberships.get(scheme)

    def prediction(self) -> Prediction | None:
        return self.facts.prediction

    def population(self, ref: MetricRef) -> Value:
        if ref not in self._population:
            raise ValueError(
                f"`{ref.text}` ranks the whole population; pass its value in population_values"
            )
        return self._population[ref]


def compute_metric_values(
    refs: Sequence[MetricRef],
    facts: CustomerFacts,
    as_of: dt.datetime,
    population_values: Mapping[MetricRef, Value] | None = None,
) -> dict[MetricRef, Value]:
    """Metric values of one customer at `as_of`. Population scores (R/F/M scores,
    percentiles) cannot be computed for one customer: give them in population_values."""
    context = _Facts(facts, as_of, population_values or {})
    return {ref: CATALOG[ref.name].python(ref, context) for ref in refs}


def is_population(ref: MetricRef) -> bool:
    """Whether the metric ranks the whole population (R/F/M scores, percentiles), so that its
    value must be given to `compute_metric_values` in population_values."""
    return CATALOG[ref.name].source is Source.POPULATION


def _operand(node: c.Operand, values: Values) -> Value:
    if isinstance(node, c.Ref):
        return values[node.ref]
    elif isinstance(node, c.Const):
        return node.value
    elif isinstance(node, c.Arith):
        return arith_py(node.op, _operand(node.left, values), _operand(node.right, values))
    else:
        assert_never(node)


def operand_value(node: c.Operand, values: Values) -> Value:
    """An operand's value for one customer's metric values (an arithmetic result computed)."""
    return _operand(node, values)


_COMPARE: dict[str, Callable[[Value, Value], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def compare(op: str, left: Value, right: Value) -> Truth:
    """`left op right` (op: =, !=, <, <=, >, >=); None (unknown) when either side is None."""
    if left is None or right is None:
        return None
    return _COMPARE[op](left, right)


def both(items: Sequence[Truth]) -> Truth:
    """SQL's AND: False if any item is False, else None if any is None, else True."""
    if any(x is False for x in items):
        return False
    return None if any(x is None for x in items) else True


def either(items: Sequence[Truth]) -> Truth:
    """SQL's OR: True if any item is True, else None if any is None, else False."""
    if any(x is True for x in items):
        return True
    return None if any(x is None for x in items) else False


def negate(value: Truth) -> Truth:
    """SQL's NOT: unknown (None) stays unknown."""
    return None if value is None else not value


def evaluate_condition(node: c.Condition, values: Values) -> Truth:
    """A checked condition for one customer's metric values (`compute_metric_values`).

    True, False, or None for unknown, in SQL's three-valued logic: a comparison with a missing
    value is unknown, `not` keeps unknown, `and` is False if any part is False and else unknown
    if any is, `or` is True if any part is True and else unknown if any is. The same answer as
    the compiled SQL (`compiler.condition_sql`). Raises KeyError when a reference of the
    condition is missing from `values`.
    """
    # isinstance rather than match: a hot walk (HOT_PATH_DISPATCH in dsl.tree).
    if isinstance(node, c.And):
        return both([evaluate_condition(x, values) for x in node.items])
    elif isinstance(node, c.Or):
        return either([evaluate_condition(x, values) for x in node.items])
    elif isinstance(node, c.Not):
        return negate(evaluate_condition(node.operand, values))
    elif isinstance(node, c.Member):
        return bool(values[node.ref])
    elif isinstance(node, c.IsNull):
        return (_operand(node.operand, values) is None) != node.negated
    elif isinstance(node, c.Compare):
        return compare(node.op, _operand(node.left, values), _operand(node.right, values))
    elif isinstance(node, c.Between):
        x = _operand(node.operand, values)
        result = both(
            [
                compare(">=", x, _operand(node.low, values)),
                compare("<=", x, _operand(node.high, values)),
            ]
        )
        return negate(result) if node.negated else result
    elif isinstance(node, c.InList):
        x = _operand(node.operand, values)
        result = either([compare("=", x, item.value) for item in node.items])
        return negate(result) if node.negated else result
    elif isinstance(node, c.TextMatch):
        x, value = _operand(node.operand, values), _operand(node.value, values)
        if x is None or value is None:
            return None
        assert isinstance(x, str) and isinstance(value, str)
        matched = value in x if node.op == "contains" else x.startswith(value)
        return not matched if node.negated else matched
    else:
        assert_never(node)


@dataclass(frozen=True)
class Kept:
    """A customer's current tier of the scheme and when its condition last held for them:
    what a `keep` tier needs to keep them (`compiler.Sources.kept`)."""

    tier: str
    qualified_at: dt.datetime | None


def keeps(tier: c.CheckedTier, kept: Kept | None, as_of: dt.datetime) -> bool:
    """Whether ``tier`` keeps its member ``kept`` at ``as_of`` (whatever its condition says):
    it has `keep N days` and they qualified within the last N days."""
    return (
        tier.keep_days is not None
        and kept is not None
        and kept.tier == tier.name
        and kept.qualified_at is not None
        and kept.qualified_at >= as_of - dt.timedelta(days=tier.keep_days)
    )


def place(
    scheme: c.CheckedScheme,
    values: Values,
    kept: Kept | None = None,
    as_of: dt.datetime | None = None,
) -> tuple[str | None, bool]:
    """The first tier whose condition is true (or `otherwise`) or that keeps the customer
    (``kept``, at ``as_of``), and whether it only keeps them; (None, False) when none
    matches."""
    for tier in scheme.tiers:
        if tier.condition is None or evaluate_condition(tier.condition, values) is True:
            return tier.name, False
        if as_of is not None and keeps(tier, kept, as_of):
            return tier.name, True
    return None, False


def evaluate(
    scheme: c.CheckedScheme,
    values: Values,
    kept: Kept | None = None,
    as_of: dt.datetime | None = None,
) -> str | None:
    """The first tier whose condition is true (or `otherwise`), or that keeps the customer
    (`place`); None when none matches."""
    return place(scheme, values, kept, as_of)[0]
