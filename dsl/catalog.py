"""The metric catalog: every name a rule can use, defined once.

Each entry says what parameters it takes, its type and unit, what it means, how Postgres
computes it (through `SqlContext`, which the compiler implements) and how it is computed in
process for one customer (through `PyContext`, which the evaluator implements). The checker,
compiler, evaluator, explain, the docs and the API all read this module.

Time rules shared by both sides: evaluation time T; only orders/events strictly before T
count; a window of N days is `T - N days <= time < T`; day counts are whole days, rounded down.
A metric given `M days ago` is its value as it was M days before T: only orders/events before
`T - M days` count, its window (if any) ends there, and day counts are to there.
Durations convert at 1 week = 7 days, 1 month = 30 days, 1 year = 365 days.

Orders, refunds and cancellations (docs/rules.md, "Orders, refunds and cancellations"): an
order row is *cancelled* (status `cancelled`: counted nowhere), a *refund* (not cancelled, and
a negative amount or a `refund_of` naming the order it refunds) or else a *sale*. A sale is
*fully refunded* when the refunds linked to it (same customer, `refund_of` = its id, before T)
add up to its amount; every other sale is a *purchase*. `frequency`, `recency` and the purchase
times count purchases; `monetary` is the net amount of every row not cancelled (sales plus the
negative refunds); `refunds`, `returns` and `refund_rate` read the refunds. Both sides
classify rows here: `classified_orders` in SQL, `purchases_py` and friends in process.
Arithmetic between values (`arith_py` / `arith_sql`) is exact; a quotient is rounded half away
from zero to DIVISION_SCALE decimals; division by zero, and anything with a null, is null.
"""

from __future__ import annotations

import datetime as dt
import enum
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dsl.grammar import KEYWORDS, is_word


class _OnFirstUse:
    """A module imported when one of its names is first read. SQLAlchemy takes longer to
    import than the rest of the language and only building SQL needs it: checking and
    formatting rules (`tierwise rules check`) start without it (tests/cli/test_startup.py)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> object:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # found directly from now on
        return value


if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy import FromClause, Subquery
    from sqlalchemy.sql.elements import ColumnElement
else:
    sa = _OnFirstUse("sqlalchemy")

Value = int | Decimal | str | bool | dt.datetime | None

DAYS_PER_UNIT = {"day": 1, "week": 7, "month": 30, "year": 365}
MAX_WINDOW_DAYS = 36_500
AVERAGE_SCALE = 4  # fractional digits of averages, as of order amounts (numeric(18,4))
DIVISION_SCALE = 10  # fractional digits of a quotient in rules (`monetary / frequency`)
PREDICTION_HORIZON_DAYS = (30, 90, 180, 365, 730)
"""The horizons `expected_orders(N days)` and `clv(N days)` are predicted for: every fitted
model stores these (and may store more); any other N is a checker error naming them."""
PROBABILITY_SCALE = 6  # fractional digits of p_alive and expected_orders
CURRENCY_SCALE = 4  # fractional digits of expected_order_value and clv, as of order amounts


class Type(enum.Enum):
    """The type of a metric and of a checked operand."""

    NUMBER = "number"
    DAYS = "days"
    TEXT = "text"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"
    ATTRIBUTE = "attribute"  # JSON value: typed by what it is compared with


class Param(enum.Enum):
    """The kinds of argument a metric can take."""

    WINDOW = "window"
    CATEGORY = "category"
    CHANNEL = "channel"
    CURRENCY = "currency"
    EVENT = "event"
    METRIC = "metric"
    AGO = "ago"  # `90 days ago`: the window ends that long before the evaluation time


@dataclass(frozen=True)
class MetricRef:
    """One concrete use of a catalog metric: the key of a value in SQL and in process."""

    name: str
    window_days: int | None = None
    ago_days: int | None = None  # the value as it was this many days before T
    category: str | None = None
    channel: str | None = None
    event: str | None = None
    currency: str | None = None  # orders in this original currency, summed in it
    of: MetricRef | None = None  # percentile(...)
    key: str | None = None  # attributes.KEY
    as_type: Type | None = None  # how an attribute is read
    scheme: str | None = None  # in tier SCHEME.TIER
    tier: str | None = None

    @property
    def text(self) -> str:
        """The canonical rule text of this reference."""
        if self.name == "attributes":
            return f"attributes.{self.key}"
        if self.name == "in tier":
            return f"in tier {self.scheme}.{quote_name(self.tier or '')}"
        args = []
        if self.of is not None:
            args.append(self.of.text)
        for word, value in (
            ("event", self.event),
            ("category", self.category),
            ("channel", self.channel),
            ("currency", self.currency),
        ):
            if value is not None:
                args.append(f"{word} {quote(value)}")
        if self.window_days is not None:
            args.append(_days_text(self.window_days))
        if self.ago_days is not None:
            args.append(_days_text(self.ago_days) + " ago")
        return f"{self.name}({', '.join(args)})" if args else self.name


def _days_text(days: int) -> str:
    return f"{days} day" + ("" if days == 1 else "s")


def quote(text: str) -> str:
    """`text` as a rule-language string: in double quotes, with the backslash, the double quote,
    new lines and tabs escaped as the parser reads them back."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def number_text(value: Decimal) -> str:
    """A number as rule text reads it back to the same value: plain digits, never the exponent
    form `str` gives very small numbers (`1E-7`), which the language does not have."""
    return format(value, "f")


def quote_name(name: str) -> str:
    """A tier name as written: bare when it can be, quoted otherwise."""
    return name if is_word(name) and name not in KEYWORDS else quote(name)


# --- What the compiler and the evaluator provide --------------------------------------------

OrderAgg = Literal[
    "count",
    "sum",
    "first_at",
    "last_at",
    "gross",
    "refund_sum",
    "refund_count",
    "largest",
    "categories",
]
EventAgg = Literal["count", "latest_value", "last_at"]
PredictionColumn = Literal[
    "p_alive", "expected_order_value", "expected_orders", "clv", "horizon_days"
]


class SqlContext(Protocol):
    """Set-based building blocks; every aggregate honours the ref's window and filters."""

    def customer(self, column: str) -> ColumnElement[Any]: ...

    @property
    def as_of(self) -> ColumnElement[Any]: ...

    def end(self, ref: MetricRef) -> ColumnElement[Any]:
        """The time the ref's value is as of: the evaluation time, or `ago_days` before it."""
        ...

    def orders(self, kind: OrderAgg, ref: MetricRef) -> ColumnElement[Any]: ...

    def events(self, kind: EventAgg, ref: MetricRef) -> ColumnElement[Any]: ...

    def value(self, ref: MetricRef) -> ColumnElement[Any]: ...

    def membership(self, scheme: str, tier: str) -> ColumnElement[Any]: ...

    def prediction(self, column: PredictionColumn) -> ColumnElement[Any]:
        """A column of the customer's stored predictions (NULL without them): p_alive and
        expected_order_value (float8), expected_orders and clv (float8[], one element per
        horizon of horizon_days, int[])."""
        ...

    def bind(self, value: object, type_: Type) -> ColumnElement[Any]: ...


class OrderFact(Protocol):
    @property
    def amount(self) -> Decimal: ...
    @property
    def ordered_at(self) -> dt.datetime: ...
    @property
    def category(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def order_id(self) -> str | None: ...
    @property
    def refund_of(self) -> str | None: ...


class EventFact(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> dt.datetime: ...
    @property
    def value(self) -> Decimal | None: ...


class PredictionFact(Protocol):
    """One customer's predictions from their tenant's current model, as the model computed
    them (binary floats): by horizon in days for expected orders and CLV; None where the model
    has no value (expected_order_value and clv when Gamma-Gamma has no finite mean)."""

    @property
    def p_alive(self) -> float: ...
    @property
    def expected_order_value(self) -> float | None: ...
    @property
    def expected_orders(self) -> Mapping[int, float]: ...
    @property
    def clv(self) -> Mapping[int, float] | None: ...


class PyContext(Protocol):
    @property
    def profile(self) -> Mapping[str, object]: ...

    @property
    def as_of(self) -> dt.datetime: ...

    def end(self, ref: MetricRef) -> dt.datetime:
        """The time the ref's value is as of: the evaluation time, or `ago_days` before it."""
        ...

    def orders(self, ref: MetricRef) -> Sequence[OrderFact]: ...

    def events(self, ref: MetricRef) -> Sequence[EventFact]: ...

    def membership(self, scheme: str) -> str | None: ...

    def population(self, ref: MetricRef) -> Value: ...

    def prediction(self) -> PredictionFact | None: ...


SqlFn = Callable[[MetricRef, SqlContext], "ColumnElement[Any]"]
PyFn = Callable[[MetricRef, PyContext], Value]


class Source(enum.Enum):
    """Where a metric's value comes from (docs/rules.md groups the metrics by it)."""

    PROFILE = "profile"
    ORDERS = "orders"
    EVENTS = "events"
    POPULATION = "population"
    MEMBERSHIP = "membership"
    PREDICTIONS = "predictions"


@dataclass(frozen=True)
class Metric:
    """One catalog entry: the name rules use, type, unit, description and example (for the
    docs), source, and how the value is computed: `sql` as an expression for the compiler,
    `python` in process for the evaluator (the two must agree); the arguments it takes
    (`params`) and those it must be given (`required`)."""

    name: str
    type: Type
    unit: str
    description: str
    example: str
    source: Source
    sql: SqlFn
    python: PyFn
    params: tuple[Param, ...] = ()
    required: tuple[Param, ...] = ()
    buyers_only: bool = False
    """A metric of purchases: ranks (`percentile`, `cumulative_share`, the R/F/M scores) of it
    are over buyers only (customers with a purchase before T), as customers who never bought
    have no rank of spend or frequency."""
    horizons: tuple[int, ...] = ()  # the only windows it takes, when it is predicted for them


# --- Shared arithmetic, identical on both sides ---------------------------------------------

_DAY = dt.timedelta(days=1)


def days_between_py(start: dt.datetime | None, end: dt.datetime) -> int | None:
    """Whole days from start to end, rounded down; None when start is None or after end."""
    if start is None or start > end:
        return None
    return (end - start) // _DAY


def days_between_sql(start: ColumnElement[Any], end: ColumnElement[Any]) -> ColumnElement[Any]:
    """`days_between_py` in SQL: whole days rounded down, NULL when start is NULL or after end."""
    # extract(epoch) is exact numeric (microseconds) and div() truncates exactly; the guard
    # makes truncation equal to rounding down, as in Python.
    days = sa.cast(sa.func.div(sa.extract("epoch", end - start), 86400), sa.BigInteger)
    return sa.case((start <= end, days), else_=sa.null())


def rounded_average_py(total: Decimal, count: int) -> Decimal | None:
    """total / count rounded half away from zero to AVERAGE_SCALE digits, exactly."""
    if count == 0:
        return None
    scaled = int(total.scaleb(AVERAGE_SCALE))  # exact: amounts have at most 4 decimals
    quotient = (2 * abs(scaled) + count) // (2 * count)
    return (Decimal(quotient if scaled >= 0 else -quotient)).scaleb(-AVERAGE_SCALE)


def exact_sql(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """value as numeric unless it already is. Postgres resolves sign() and the operators of an
    integer and a numeric to double precision, which would put a binary float between the
    data and the answer."""
    return value if isinstance(value.type, sa.Numeric) else sa.cast(value, sa.Numeric)


def rounded_average_sql(total: ColumnElement[Any], count: ColumnElement[Any]) -> ColumnElement[Any]:
    """`rounded_average_py` in SQL: total / count rounded half away from zero to AVERAGE_SCALE
    digits, exactly."""
    # Integer arithmetic with div(), so no intermediate rounding: the same digits as Python.
    total = exact_sql(total)
    scaled = total * sa.literal(10**AVERAGE_SCALE, sa.Numeric)
    quotient = sa.func.div(
        sa.literal(2, sa.Numeric) * sa.func.abs(scaled) + count, sa.literal(2, sa.Numeric) * count
    )
    return sa.func.sign(total) * quotient / sa.literal(10**AVERAGE_SCALE, sa.Numeric)


def rounded_ratio_py(part: Decimal, whole: Decimal) -> Decimal | None:
    """part / whole rounded half away from zero to AVERAGE_SCALE digits, exactly; None when
    whole is 0 (both have at most AVERAGE_SCALE decimals, as sums of amounts do)."""
    if whole == 0:
        return None
    numerator = int(part.scaleb(2 * AVERAGE_SCALE))
    denominator = int(whole.scaleb(AVERAGE_SCALE))
    quotient = (2 * abs(numerator) + abs(denominator)) // (2 * abs(denominator))
    negative = (numerator < 0) != (denominator < 0)
    return Decimal(-quotient if negative else quotient).scaleb(-AVERAGE_SCALE)


def rounded_ratio_sql(part: ColumnElement[Any], whole: ColumnElement[Any]) -> ColumnElement[Any]:
    """`rounded_ratio_py` in SQL: NULL when whole is 0 or NULL."""
    part, whole = exact_sql(part), exact_sql(whole)
    numerator = part * sa.literal(10 ** (2 * AVERAGE_SCALE), sa.Numeric)
    denominator = sa.func.nullif(whole, 0) * sa.literal(10**AVERAGE_SCALE, sa.Numeric)
    two = sa.literal(2, sa.Numeric)
    quotient = sa.func.div(
        two * sa.func.abs(numerator) + sa.func.abs(denominator), two * sa.func.abs(denominator)
    )
    return (
        sa.func.sign(numerator)
        * sa.func.sign(denominator)
        * quotient
        / sa.literal(10**AVERAGE_SCALE, sa.Numeric)
    )


# --- Orders, refunds, cancellations: which rows are purchases --------------------------------

COMPLETED = "completed"
CANCELLED = "cancelled"
ORDER_STATUSES = (COMPLETED, CANCELLED)


def classified_orders(orders: FromClause, before: ColumnElement[Any] | None) -> Subquery:
    """The rows of ``orders`` (the orders table's columns) dated before ``before``, with three
    booleans: `counted` (not cancelled), `refund` (a counted row with a negative amount or a
    `refund_of`) and `purchase` (a counted sale that its linked refunds before ``before`` do
    not cover in full), and `refunded`: the total of those linked refunds (positive; 0).
    The one SQL definition of a purchase (see the module docstring): the compiler, the
    rollups and the prediction models all read it."""
    rows = sa.select(orders)
    if before is not None:
        rows = rows.where(orders.c.ordered_at < before)
    dated = rows.subquery("dated_orders")
    counted = dated.c.status != CANCELLED
    refund = sa.and_(counted, sa.or_(dated.c.amount < 0, dated.c.refund_of.is_not(None)))
    # A sale and the refunds linked to it share the window's partition (customer, the sale's
    # id): one sort, never a join. Joined to an aggregate of the refunds instead, a tenant the
    # statistics took for a handful of rows (a first big import) was planned as a nested loop
    # re-aggregating every refund for each order: minutes for 60,000 orders, not 0.3 s.
    linked = sa.func.sum(-dated.c.amount).filter(sa.and_(refund, dated.c.refund_of.is_not(None)))
    key = sa.func.coalesce(dated.c.refund_of, dated.c.external_id)
    links = sa.select(
        dated,
        counted.label("counted"),
        refund.label("refund"),
        # Null for a sale without linked refunds (and for refunds, whose links do not matter).
        sa.case(
            (dated.c.refund_of.is_(None), linked.over(partition_by=(dated.c.customer_id, key)))
        ).label("linked"),
    ).subquery("refund_links")
    covered = sa.and_(links.c.linked.is_not(None), links.c.linked >= links.c.amount)
    return sa.select(
        *(links.c[column.key] for column in dated.c),
        links.c.counted,
        links.c.refund,
        sa.and_(links.c.counted, sa.not_(links.c.refund), sa.not_(covered)).label("purchase"),
        sa.func.coalesce(links.c.linked, 0).label("refunded"),
    ).subquery("classified_orders")


def is_counted(order: OrderFact) -> bool:
    """Not cancelled: the row counts in `monetary` (as a sale or a refund)."""
    return order.status != CANCELLED


def is_refund(order: OrderFact) -> bool:
    """A refund: counted, with a negative amount or a `refund_of`."""
    return is_counted(order) and (order.amount < 0 or order.refund_of is not None)


def is_sale(order: OrderFact) -> bool:
    """Counted and not a refund: a purchase, unless refunded in full."""
    return is_counted(order) and not is_refund(order)


def fully_refunded(orders: Sequence[OrderFact]) -> set[str]:
    """Ids of the sales among ``orders`` (one customer's, before T) whose linked refunds
    among them add up to at least their amount."""
    refunded: dict[str, Decimal] = {}
    for order in orders:
        if is_refund(order) and order.refund_of is not None:
            refunded[order.refund_of] = refunded.get(order.refund_of, Decimal(0)) - order.amount
    return {
        order.order_id
        for order in orders
        if is_sale(order)
        and order.order_id is not None
        and order.order_id in refunded
        and refunded[order.order_id] >= order.amount
    }


_ALL_ORDERS = MetricRef("frequency")  # all of a customer's orders before T


def purchases_py(ref: MetricRef, ctx: PyContext) -> list[OrderFact]:
    """The purchases among the orders of ``ref`` (its window and filters), in process."""
    gone = fully_refunded(ctx.orders(_ALL_ORDERS))
    return [o for o in ctx.orders(ref) if is_sale(o) and o.order_id not in gone]


def _net_py(ref: MetricRef, ctx: PyContext) -> Decimal:
    return sum((o.amount for o in ctx.orders(ref) if is_counted(o)), Decimal(0))


def _gross_py(ref: MetricRef, ctx: PyContext) -> Decimal:
    return sum((o.amount for o in ctx.orders(ref) if is_sale(o)), Decimal(0))


def _refunded_py(ref: MetricRef, ctx: PyContext) -> Decimal:
    return sum((-o.amount for o in ctx.orders(ref) if is_refund(o)), Decimal(0))


ArithOp = Literal["+", "-", "*", "/"]

# Exact decimal arithmetic: no operation of a rule rounds (a quotient is rounded on purpose).
_EXACT = Context(prec=1000)
_SCALE_DOWN = Decimal(1).scaleb(-DIVISION_SCALE)


def arith_py(op: ArithOp, left: Value, right: Value) -> Value:
    """`left op right` as rules compute it: numbers and day counts exactly, a quotient rounded
    half away from zero to DIVISION_SCALE decimals, a time minus a time in whole days rounded
    down; None when either side is None or on division by zero."""
    if left is None or right is None:
        return None
    if isinstance(left, dt.datetime) and isinstance(right, dt.datetime):
        return (left - right) // _DAY
    a, b = Decimal(left), Decimal(right)  # type: ignore[arg-type]
    if op == "+":
        return _EXACT.add(a, b)
    if op == "-":
        return _EXACT.subtract(a, b)
    if op == "*":
        return _EXACT.multiply(a, b)
    if b == 0:
        return None
    a_abs, b_abs = _EXACT.abs(a), _EXACT.abs(b)
    scaled = _EXACT.add(_EXACT.multiply(a_abs.scaleb(DIVISION_SCALE, _EXACT), 2), b_abs)
    quotient = _EXACT.divide_int(scaled, _EXACT.multiply(b_abs, 2))
    if (a < 0) != (b < 0) and quotient:
        quotient = _EXACT.minus(quotient)
    return _EXACT.multiply(quotient, _SCALE_DOWN)


def arith_sql(
    op: ArithOp, left: ColumnElement[Any], right: ColumnElement[Any], times: bool
) -> ColumnElement[Any]:
    """`arith_py` in SQL; `times`: both sides are times (their difference in days)."""
    if times:
        seconds = sa.extract("epoch", left - right)  # exact numeric (microseconds)
        days = sa.func.div(seconds, 86400)  # truncated toward zero; down for negative remainders
        return sa.case(((seconds < 0) & (sa.func.mod(seconds, 86400) != 0), days - 1), else_=days)
    # Integers (counts, day counts) as numeric: no integer division, no overflow.
    a, b = exact_sql(left), exact_sql(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    # The rounded quotient from div(), which truncates exactly: round half away from zero is
    # trunc((2|a| 10^s + |b|) / 2|b|). A zero divisor is NULL (never an error, even when the
    # planner folds constants).
    divisor = sa.func.nullif(sa.func.abs(b), sa.literal(0, sa.Numeric)) * sa.literal(2, sa.Numeric)
    scaled = sa.func.abs(a) * sa.literal(2 * 10**DIVISION_SCALE, sa.Numeric) + sa.func.abs(b)
    return sa.func.sign(a * b) * sa.func.div(scaled, divisor) * sa.literal(_SCALE_DOWN, sa.Numeric)


def prediction_decimal_py(value: float | None, scale: int) -> Decimal | None:
    """A model output (binary float) as the exact decimal users see: rounded half away from
    zero to ``scale`` digits; None for None or NaN. Equal to `prediction_decimal_sql`: the
    stored floats are already rounded to ``scale`` digits, so the 15 significant digits
    Postgres converts a float8 with and Python's shortest repr give the same decimal."""
    if value is None or value != value:
        return None
    return Decimal(repr(value)).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def prediction_decimal_sql(value: ColumnElement[Any], scale: int) -> ColumnElement[Any]:
    """`prediction_decimal_py` in SQL: numeric rounded half away from zero to ``scale``."""
    return sa.func.round(sa.cast(value, sa.Numeric), sa.literal(scale))


def _at_horizon(ref: MetricRef, ctx: SqlContext, column: PredictionColumn) -> ColumnElement[Any]:
    position = sa.func.array_position(
        ctx.prediction("horizon_days"), sa.literal(ref.window_days, sa.Integer)
    )
    return ctx.prediction(column)[position]


def _predicted(column: PredictionColumn, scale: int) -> tuple[SqlFn, PyFn]:
    """How a prediction metric is read: the stored column (at the index of the ref's window in
    the model's horizons, for expected orders and CLV), rounded to ``scale`` digits."""

    def sql(ref: MetricRef, ctx: SqlContext) -> ColumnElement[Any]:
        if ref.window_days is None:
            return prediction_decimal_sql(ctx.prediction(column), scale)
        return prediction_decimal_sql(_at_horizon(ref, ctx, column), scale)

    def python(ref: MetricRef, ctx: PyContext) -> Value:
        fact = ctx.prediction()
        if fact is None:
            return None
        if column == "p_alive":
            return prediction_decimal_py(fact.p_alive, scale)
        if column == "expected_order_value":
            return prediction_decimal_py(fact.expected_order_value, scale)
        assert ref.window_days is not None
        by_horizon = fact.expected_orders if column == "expected_orders" else fact.clv
        return (
            None
            if by_horizon is None
            else prediction_decimal_py(by_horizon.get(ref.window_days), scale)
        )

    return sql, python


# --- Definitions -----------------------------------------------------------------------------

_ORDER_PARAMS = (Param.WINDOW, Param.AGO, Param.CATEGORY, Param.CHANNEL, Param.CURRENCY)


def _last_nonnull(values: Sequence[dt.datetime]) -> dt.datetime | None:
    return max(values) if values else None


def _first(values: Sequence[dt.datetime]) -> dt.datetime | None:
    return min(values) if values else None


def _latest_value(ctx: PyContext, ref: MetricRef) -> Decimal | None:
    answered = [e for e in ctx.events(ref) if e.value is not None]
    if not answered:
        return None
    # Latest first; equal times resolved by the higher value, as in the SQL's ORDER BY.
    return max(answered, key=lambda e: (e.occurred_at, e.value)).value


def _purchase_interval_sql(ref: MetricRef, ctx: SqlContext) -> ColumnElement[Any]:
    first, last = ctx.orders("first_at", ref), ctx.orders("last_at", ref)
    # The last purchase is never before the first: whole days by truncation, as
    # `days_between_sql` gives them (its guard is not needed).
    days = sa.cast(sa.func.div(sa.extract("epoch", last - first), 86400), sa.BigInteger)
    gaps = sa.func.nullif(sa.func.coalesce(ctx.orders("count", ref), 0) - 1, 0)
    return rounded_average_sql(days, gaps)


def _purchase_interval_py(ref: MetricRef, ctx: PyContext) -> Value:
    times = [o.ordered_at for o in purchases_py(ref, ctx)]
    if len(times) < 2:
        return None
    days = days_between_py(min(times), max(times))
    assert days is not None
    return rounded_average_py(Decimal(days), len(times) - 1)


def _tenure_sql(ref: MetricRef, ctx: SqlContext) -> ColumnElement[Any]:
    all_time = MetricRef("frequency")
    start = sa.func.coalesce(ctx.customer("registered_at"), ctx.orders("first_at", all_time))
    return days_between_sql(start, ctx.as_of)


def _tenure_py(ref: MetricRef, ctx: PyContext) -> Value:
    registered = ctx.profile.get("registered_at")
    if isinstance(registered, dt.datetime):
        return days_between_py(registered, ctx.as_of)
    first = _first([o.ordered_at for o in purchases_py(_ALL_ORDERS, ctx)])
    return days_between_py(first, ctx.as_of)


def _attribute_sql(ref: MetricRef, ctx: SqlContext) -> ColumnElement[Any]:
    raw = ctx.customer("attributes").op("->")(ctx.bind(ref.key, Type.TEXT))
    text = ctx.customer("attributes").op("->>")(ctx.bind(ref.key, Type.TEXT))
    kind = sa.func.jsonb_typeof(raw)
    if ref.as_type is Type.TEXT:
        return sa.case((kind == "string", text), else_=sa.null())
    if ref.as_type is Type.NUMBER:
        return sa.case((kind == "number", sa.cast(text, sa.Numeric)), else_=sa.null())
    if ref.as_type is Type.BOOLEAN:
        return sa.case((kind == "boolean", sa.cast(text, sa.Boolean)), else_=sa.null())
    from sqlalchemy.dialects.postgresql import JSONB

    return sa.func.nullif(raw, sa.cast(sa.literal("null"), JSONB))


def attribute_value(raw: object, as_type: Type | None) -> Value:
    """Read one JSON attribute value the way `_attribute_sql` does."""
    if as_type is Type.TEXT:
        return raw if isinstance(raw, str) else None
    if as_type is Type.BOOLEAN:
        return raw if isinstance(raw, bool) else None
    if as_type is Type.NUMBER:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | Decimal):
            return Decimal(raw)
        if isinstance(raw, float):
            return Decimal(repr(raw))  # JSON text round-trips through repr
        return None
    if raw is None or isinstance(raw, str | bool | int | Decimal):
        return raw
    return str(raw)  # objects, arrays: shown, only ever tested for null


def _attribute_py(ref: MetricRef, ctx: PyContext) -> Value:
    attributes = ctx.profile.get("attributes") or {}
    assert isinstance(attributes, Mapping)
    return attribute_value(attributes.get(ref.key), ref.as_type)


def _profile(name: str) -> tuple[SqlFn, PyFn]:
    def sql(ref: MetricRef, ctx: SqlContext) -> ColumnElement[Any]:
        return ctx.customer(name)

    def python(ref: MetricRef, ctx: PyContext) -> Value:
        value = ctx.profile.get(name)
        return value if isinstance(value, int | str | dt.datetime | Decimal) else None

    return sql, python


def _population(name: str, underlying: MetricRef | None, buckets: int, descending: bool) -> Metric:
    """Scores by rank in the tenant's population: ceil(buckets * cume_dist), ties equal."""

    def sql(ref: MetricRef, ctx: SqlContext) -> ColumnElement[Any]:
        return population_sql(ranked_sql(underlying or _of(ref), ctx), buckets, descending)

    def python(ref: MetricRef, ctx: PyContext) -> Value:
        return ctx.population(ref)

    scale = "1-5" if buckets == 5 else f"1-{buckets}"
    return Metric(
        name,
        Type.NUMBER,
        f"score {scale}",
        "",
        "",
        Source.POPULATION,
        sql,
        python,
        params=(Param.METRIC,) if underlying is None else (),
        required=(Param.METRIC,) if underlying is None else (),
    )


def ranks_buyers_only(ref: MetricRef) -> bool:
    """Whether ranks of ``ref`` are over buyers only (`Metric.buyers_only`)."""
    return CATALOG[ref.name].buyers_only


def ranked_sql(ref: MetricRef, ctx: SqlContext) -> ColumnElement[Any]:
    """The value a rank of ``ref`` ranks: NULL (unranked) for customers without a purchase
    before T when ``ref`` is a metric of purchases."""
    value = ctx.value(ref)
    if not ranks_buyers_only(ref):
        return value
    return sa.case((ctx.orders("first_at", _ALL_ORDERS).is_not(None), value), else_=sa.null())


def _of(ref: MetricRef) -> MetricRef:
    assert ref.of is not None
    return ref.of


def population_sql(value: ColumnElement[Any], buckets: int, descending: bool) -> ColumnElement[Any]:
    """A score from 1 to `buckets` of each row's value among all rows: ceil(buckets * k / n),
    k the number of non-null values ranked at or before it in the given order (ties share a
    score), n the number of non-null values; NULL for NULL. Quintile scores have 5 buckets,
    percentiles 100."""
    order = value.desc() if descending else value.asc()
    # count over the ordered partition (RANGE frame: peers included) = customers ranked at
    # or below this one; integer ceil(buckets * k / n) avoids cume_dist's float rounding.
    at_or_below = sa.over(sa.func.count(value), partition_by=value.is_(None), order_by=order)
    population = sa.over(sa.func.count(value))
    score = sa.func.div(buckets * at_or_below + population - 1, population)
    return sa.case((value.is_(None), sa.null()), else_=sa.cast(score, sa.BigInteger))


def population_py(
    values: Mapping[object, Value], buckets: int, descending: bool
) -> dict[object, int | None]:
    """The same scores in process, for a whole population (used to cross-check the SQL)."""
    present: list[Any] = [v for v in values.values() if v is not None]
    n = len(present)
    out: dict[object, int | None] = {}
    for key, value in values.items():
        v: Any = value
        if v is None:
            out[key] = None
            continue
        at_or_below = sum(1 for w in present if (w >= v if descending else w <= v))
        out[key] = -(-buckets * at_or_below // n)
    return out


def cumulative_share_sql(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """For each row, the percentage of the positive total of all values held by the rows
    ranked at or above it, rounded up to a whole number (ABC / Pareto classes): values of 0
    or less hold no share (refunds can make a net amount negative), so each share is within
    1-100 and those rows get 100. NULL for NULL, and for all rows when no value is positive."""
    # sum over the ordered partition (RANGE frame: peers included) = the total of customers
    # ranked at or above this one. ceil(100 * part / total) from div() and mod() is exact, so
    # it equals the Python definition digit for digit (a numeric division would round first).
    positive = sa.func.greatest(value, sa.literal(0, sa.Numeric))
    part = sa.over(sa.func.sum(positive), partition_by=value.is_(None), order_by=value.desc())
    total = sa.over(sa.func.sum(positive))
    scaled = sa.literal(100, sa.Numeric) * part
    above = sa.case((sa.func.mod(scaled, total) > 0, 1), else_=0)
    share = sa.cast(sa.func.div(scaled, total) + above, sa.BigInteger)
    # Without a positive total there is nothing to take a share of.
    return sa.case((value.is_(None), sa.null()), (total <= 0, sa.null()), else_=share)


def cumulative_share_py(values: Mapping[object, Value]) -> dict[object, int | None]:
    """The same shares in process, for a whole population (used to cross-check the SQL)."""
    present: list[Any] = [v for v in values.values() if v is not None]
    with localcontext() as exact:
        exact.prec = 200  # sums of numeric(18,4) amounts, times 100: never rounded
        total = sum((max(Decimal(v), Decimal(0)) for v in present), Decimal(0))
        out: dict[object, int | None] = {}
        for key, value in values.items():
            v: Any = value
            if v is None or total <= 0:
                out[key] = None
                continue
            part = sum((max(Decimal(w), Decimal(0)) for w in present if w >= v), Decimal(0))
            # Decimal divmod truncates toward zero and the remainder takes the dividend's
            # sign, as Postgres div() and mod() do.
            quotient, remainder = divmod(100 * part, total)
            out[key] = int(quotient) + (1 if remainder > 0 else 0)
    return out


def _build() -> dict[str, Metric]:
    metrics: list[Metric] = []

    def add(metric: Metric) -> None:
        metrics.append(metric)

    add(
        Metric(
            "frequency",
            Type.NUMBER,
            "orders",
            "Number of purchases: orders neither cancelled, nor refunds, nor refunded in full.",
            "frequency(30 days) >= 2",
            Source.ORDERS,
            lambda r, c: sa.func.coalesce(c.orders("count", r), 0),
            lambda r, c: len(purchases_py(r, c)),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "monetary",
            Type.NUMBER,
            "currency",
            "Net amount: the orders not cancelled, less their refunds (0 without orders; "
            "negative when refunds exceed purchases in the window).",
            "monetary(365 days) > 5000",
            Source.ORDERS,
            lambda r, c: sa.func.coalesce(c.orders("sum", r), 0),
            _net_py,
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "average_order_value",
            Type.NUMBER,
            "currency",
            f"Net amount divided by the number of purchases, rounded half away from zero to "
            f"{AVERAGE_SCALE} decimals; null without purchases.",
            "average_order_value(365 days) >= 200",
            Source.ORDERS,
            lambda r, c: rounded_average_sql(
                c.orders("sum", r), sa.func.nullif(c.orders("count", r), 0)
            ),
            lambda r, c: rounded_average_py(_net_py(r, c), len(purchases_py(r, c))),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "recency",
            Type.DAYS,
            "days",
            "Whole days from the last purchase to the evaluation time; null without purchases.",
            "recency > 90 days",
            Source.ORDERS,
            lambda r, c: days_between_sql(c.orders("last_at", r), c.end(r)),
            lambda r, c: days_between_py(
                _last_nonnull([o.ordered_at for o in purchases_py(r, c)]), c.end(r)
            ),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "first_purchase",
            Type.TIMESTAMP,
            "date and time",
            "Time of the first purchase; null without purchases.",
            "first_purchase >= 2026-01-01",
            Source.ORDERS,
            lambda r, c: c.orders("first_at", r),
            lambda r, c: _first([o.ordered_at for o in purchases_py(r, c)]),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "last_purchase",
            Type.TIMESTAMP,
            "date and time",
            "Time of the last purchase; null without purchases.",
            "last_purchase < 2026-01-01",
            Source.ORDERS,
            lambda r, c: c.orders("last_at", r),
            lambda r, c: _last_nonnull([o.ordered_at for o in purchases_py(r, c)]),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "largest_order",
            Type.NUMBER,
            "currency",
            "Amount of the largest purchase (as sold: before any partial refund of it); null "
            "without purchases.",
            "largest_order(365 days) >= 1000",
            Source.ORDERS,
            lambda r, c: c.orders("largest", r),
            lambda r, c: max((o.amount for o in purchases_py(r, c)), default=None),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "categories",
            Type.NUMBER,
            "categories",
            "Number of distinct product categories among the purchases (orders without a "
            "category not counted); 0 without purchases.",
            "categories(365 days) >= 3",
            Source.ORDERS,
            lambda r, c: sa.func.coalesce(c.orders("categories", r), 0),
            lambda r, c: len({o.category for o in purchases_py(r, c) if o.category is not None}),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "purchase_interval",
            Type.DAYS,
            "days",
            f"Average days between purchases: whole days from the first purchase to the last, "
            f"divided by the purchases less one, rounded half away from zero to "
            f"{AVERAGE_SCALE} decimals; null with fewer than two purchases.",
            "purchase_interval(365 days) <= 30 days",
            Source.ORDERS,
            _purchase_interval_sql,
            _purchase_interval_py,
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "days_since_first_purchase",
            Type.DAYS,
            "days",
            "Whole days from the first purchase to the evaluation time (how long they have "
            "been a buyer); null without purchases.",
            "days_since_first_purchase >= 365 days",
            Source.ORDERS,
            lambda r, c: days_between_sql(c.orders("first_at", r), c.end(r)),
            lambda r, c: days_between_py(
                _first([o.ordered_at for o in purchases_py(r, c)]), c.end(r)
            ),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "refunds",
            Type.NUMBER,
            "currency",
            "Amount refunded: the refunds dated in the window, as a positive amount (0 without).",
            "refunds(90 days) > 500",
            Source.ORDERS,
            lambda r, c: sa.func.coalesce(c.orders("refund_sum", r), 0),
            _refunded_py,
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "returns",
            Type.NUMBER,
            "refunds",
            "Number of refunds (refund rows) dated in the window.",
            "returns(365 days) >= 3",
            Source.ORDERS,
            lambda r, c: sa.func.coalesce(c.orders("refund_count", r), 0),
            lambda r, c: sum(1 for o in c.orders(r) if is_refund(o)),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "refund_rate",
            Type.NUMBER,
            "ratio 0-1",
            f"`refunds` divided by the gross amount of the sales (orders not cancelled, not "
            f"refunds) in the same window, rounded half away from zero to {AVERAGE_SCALE} "
            "decimals: 0.25 is a quarter refunded; above 1 when the window's refunds are of "
            "older sales; null without sales in the window.",
            "refund_rate(365 days) > 0.3",
            Source.ORDERS,
            lambda r, c: rounded_ratio_sql(
                sa.func.coalesce(c.orders("refund_sum", r), 0), c.orders("gross", r)
            ),
            lambda r, c: rounded_ratio_py(_refunded_py(r, c), _gross_py(r, c)),
            _ORDER_PARAMS,
            buyers_only=True,
        )
    )
    add(
        Metric(
            "tenure",
            Type.DAYS,
            "days",
            "Whole days from registration (or, without a registration date, the first order) to "
            "the evaluation time; null when neither is known or registration is later.",
            "tenure < 30 days",
            Source.ORDERS,
            _tenure_sql,
            _tenure_py,
        )
    )
    add(
        Metric(
            "count",
            Type.NUMBER,
            "events",
            "Number of behaviour events of a type.",
            'count(event "complaint", 90 days) >= 2',
            Source.EVENTS,
            lambda r, c: sa.func.coalesce(c.events("count", r), 0),
            lambda r, c: len(c.events(r)),
            (Param.EVENT, Param.WINDOW, Param.AGO),
            (Param.EVENT,),
        )
    )
    add(
        Metric(
            "days_since",
            Type.DAYS,
            "days",
            "Whole days from the last event of a type to the evaluation time; null without one.",
            'days_since(event "login") > 30 days',
            Source.EVENTS,
            lambda r, c: days_between_sql(c.events("last_at", r), c.end(r)),
            lambda r, c: days_between_py(
                _last_nonnull([e.occurred_at for e in c.events(r)]), c.end(r)
            ),
            (Param.EVENT, Param.WINDOW, Param.AGO),
            (Param.EVENT,),
        )
    )
    add(
        Metric(
            "nps",
            Type.NUMBER,
            "score 0-10",
            "Value of the latest `nps` event that has a value (equal times: the higher value); "
            "null without one.",
            "nps <= 6",
            Source.EVENTS,
            lambda r, c: c.events("latest_value", r),
            lambda r, c: _latest_value(c, r),
            (Param.WINDOW, Param.AGO),
        )
    )
    recency, frequency, monetary = (
        MetricRef("recency"),
        MetricRef("frequency"),
        MetricRef("monetary"),
    )
    for name, underlying, descending, what in (
        ("r_score", recency, True, "recency (5 = bought most recently)"),
        ("f_score", frequency, False, "frequency (5 = most orders)"),
        ("m_score", monetary, False, "monetary (5 = highest spend)"),
    ):
        base = _population(name, underlying, 5, descending)
        add(
            Metric(
                name,
                base.type,
                base.unit,
                f"Quintile score 1-5 of all-time {what} among the tenant's buyers (customers "
                "with a purchase): ceil(5 × share of buyers ranked at or below); equal values "
                "get equal scores; null for customers who never bought.",
                f"{name} >= 4",
                Source.POPULATION,
                base.sql,
                base.python,
            )
        )
    base = _population("percentile", None, 100, False)
    add(
        Metric(
            "percentile",
            base.type,
            "percent 1-100",
            "Percentile rank 1-100 of a metric among the tenant's customers: "
            "ceil(100 × share of customers whose value is at or below this one); "
            "equal values get equal ranks; null when the metric is null. A metric of orders "
            "ranks buyers only (customers with a purchase; null for the others). "
            "`percentile(monetary) > 80` is the top 20 %.",
            "percentile(monetary(365 days)) > 80",
            Source.POPULATION,
            base.sql,
            base.python,
            base.params,
            base.required,
        )
    )
    add(
        Metric(
            "cumulative_share",
            Type.NUMBER,
            "percent",
            "Share of the tenant's total of a metric held by the customers whose value is at or "
            "above this one's (this one and equal values included), as ceil(100 × that total / "
            "the tenant's total): the Pareto curve of ABC analysis. "
            "`cumulative_share(monetary(365 days)) <= 80` are the customers who bring the first "
            "80 % of last year's revenue. Only positive values make up totals, so a share is "
            "always 1-100, and customers at 0 or below (net of refunds) get 100. A metric of "
            "orders counts buyers only (null for customers who never bought). Null when the "
            "metric is null or no value is positive.",
            "cumulative_share(monetary(365 days)) <= 80",
            Source.POPULATION,
            lambda r, c: cumulative_share_sql(ranked_sql(_of(r), c)),
            lambda r, c: c.population(r),
            (Param.METRIC,),
            (Param.METRIC,),
        )
    )
    about_models = (
        " Null for customers without orders, and for all customers until the tenant's model is "
        "fitted (`tierwise predict fit`; docs/predictions.md). The value is as of the customer's "
        "last prediction: the fit, the scheduled refit, or their last order."
    )
    horizons = ", ".join(str(days) for days in PREDICTION_HORIZON_DAYS)
    sql, python = _predicted("p_alive", PROBABILITY_SCALE)
    add(
        Metric(
            "p_alive",
            Type.NUMBER,
            "probability 0-1",
            "Probability that the customer is still active (BG/NBD, Fader, Hardie and Lee 2005), "
            f"rounded to {PROBABILITY_SCALE} decimals." + about_models,
            "p_alive < 0.3",
            Source.PREDICTIONS,
            sql,
            python,
        )
    )
    sql, python = _predicted("expected_orders", PROBABILITY_SCALE)
    add(
        Metric(
            "expected_orders",
            Type.NUMBER,
            "purchase occasions",
            "Expected number of purchase occasions (days with a purchase) in the next N days, "
            "given the customer's history (BG/NBD conditional expectation), rounded to "
            f"{PROBABILITY_SCALE} decimals. N is one of {horizons} days." + about_models,
            "expected_orders(90 days) >= 1",
            Source.PREDICTIONS,
            sql,
            python,
            (Param.WINDOW,),
            (Param.WINDOW,),
            horizons=PREDICTION_HORIZON_DAYS,
        )
    )
    sql, python = _predicted("expected_order_value", CURRENCY_SCALE)
    add(
        Metric(
            "expected_order_value",
            Type.NUMBER,
            "currency",
            "Expected mean net value of the customer's future purchase occasions (Gamma-Gamma, "
            "Fader and Hardie 2013, conditional on their repeat purchases), rounded to "
            f"{CURRENCY_SCALE} decimals; also null when the fitted model has no finite mean "
            "(q <= 1)." + about_models,
            "expected_order_value > 100",
            Source.PREDICTIONS,
            sql,
            python,
        )
    )
    sql, python = _predicted("clv", CURRENCY_SCALE)
    add(
        Metric(
            "clv",
            Type.NUMBER,
            "currency",
            "Customer lifetime value over the next N days: expected_orders(N days) × "
            "expected_order_value, discounted at the model's yearly rate (0 unless set), "
            f"rounded to {CURRENCY_SCALE} decimals. N is one of {horizons} days." + about_models,
            "percentile(clv(365 days)) > 90",
            Source.PREDICTIONS,
            sql,
            python,
            (Param.WINDOW,),
            (Param.WINDOW,),
            horizons=PREDICTION_HORIZON_DAYS,
        )
    )
    for name, type_, description, example in (
        ("age", Type.NUMBER, "Age in years, from the profile.", "age between 18 and 35"),
        ("gender", Type.TEXT, "Gender, from the profile.", 'gender = "female"'),
        ("occupation", Type.TEXT, "Occupation, from the profile.", 'occupation = "teacher"'),
        ("region", Type.TEXT, "Region, from the profile.", 'region in ["north", "west"]'),
        ("industry", Type.TEXT, "Industry (business customers).", 'industry = "retail"'),
        (
            "company_size",
            Type.NUMBER,
            "Number of employees (business customers).",
            "company_size >= 500",
        ),
        ("registered_at", Type.TIMESTAMP, "Registration time.", "registered_at < 2025-01-01"),
    ):
        sql, python = _profile(name)
        unit = {"age": "years", "company_size": "employees"}.get(name, "")
        add(Metric(name, type_, unit, description, example, Source.PROFILE, sql, python))
    add(
        Metric(
            "attributes",
            Type.ATTRIBUTE,
            "",
            "`attributes.KEY`: a free-form attribute. It is read as text when the JSON value is a "
            "string, as a number when it is a number, as true/false when it is a boolean, and is "
            'null otherwise (missing key, JSON null, another type): so `attributes.plan = "gold"` '
            "is unknown, not an error, for a customer whose plan is 5.",
            'attributes.plan = "gold"',
            Source.PROFILE,
            _attribute_sql,
            _attribute_py,
        )
    )
    add(
        Metric(
            "in tier",
            Type.BOOLEAN,
            "",
            "`in tier SCHEME.TIER`: whether the customer is currently in that tier of another "
            "scheme (false when in another tier or none). Cycles between schemes are rejected.",
            "in tier value.VIP",
            Source.MEMBERSHIP,
            lambda r, c: c.membership(r.scheme or "", r.tier or ""),
            lambda r, c: c.membership(r.scheme or "") == r.tier,
        )
    )
    return {m.name: m for m in metrics}


CATALOG: Mapping[str, Metric] = _build()


def metric(ref: MetricRef) -> Metric:
    """The catalog entry of a reference; raises KeyError for a name not in the catalog."""
    return CATALOG[ref.name]


def window_days(amount: Decimal, unit: str) -> Decimal:
    """A duration in days (DAYS_PER_UNIT: a month is 30 days, a year 365); raises KeyError
    for an unknown unit."""
    return amount * DAYS_PER_UNIT[unit]
