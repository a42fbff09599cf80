"""Checked rules to one set-based SQLAlchemy Core statement.

Shape of every statement: orders and events are each aggregated once per customer, with one
`FILTER (WHERE ...)` aggregate per distinct (aggregate, window, filters) the rules use; those
are LEFT JOINed to the customers into a `metrics` relation (one column per metric reference,
population scores as window functions over it); the scheme is a `CASE` over that relation in
rule order. Every value from rule text, and the evaluation time, is a bound parameter;
identifiers come only from the catalog and `Sources`.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never
from typing import cast as cast_type

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    FromClause,
    Integer,
    Numeric,
    Select,
    Subquery,
    Text,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    not_,
    null,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, array_agg
from sqlalchemy.sql import default_comparator, functions, operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, Grouping
from sqlalchemy.sql.operators import ColumnOperators
from sqlalchemy.sql.type_api import BOOLEANTYPE, TypeEngine

from dsl import checked as c
from dsl.catalog import (
    CATALOG,
    EventAgg,
    MetricRef,
    OrderAgg,
    PredictionColumn,
    Type,
    arith_sql,
    classified_orders,
)

_SQL_TYPES: dict[Type, Any] = {
    Type.NUMBER: Numeric(),
    Type.DAYS: Numeric(),
    Type.TEXT: Text(),
    Type.TIMESTAMP: DateTime(timezone=True),
    Type.BOOLEAN: Boolean(),
    Type.ATTRIBUTE: Text(),
}


@dataclass(frozen=True)
class Sources:
    """The relations a statement reads: tables, or tenant-filtered subqueries of them.

    customers: id, registered_at, attributes and the profile fields; orders: external_id,
    customer_id, amount, original_amount, currency, ordered_at, status, refund_of, category,
    channel; events:
    customer_id, type, occurred_at, value; memberships: customer_id, scheme, tier (current
    tiers of other schemes); predictions (optional): customer_id, p_alive,
    expected_order_value, expected_orders, clv and horizon_days (see
    `catalog.SqlContext.prediction`), one row per customer with predictions; without it the
    prediction metrics are null. kept (optional): see below.
    """

    customers: FromClause
    orders: FromClause
    events: FromClause
    memberships: FromClause
    predictions: FromClause | None = None
    kept: Callable[[str], FromClause] | None = None
    """For a scheme key, its members as the scheme's `keep` tiers see them: customer_id, tier
    and qualified_at (the last time their tier's condition held); None: no one is kept."""


_TIMESTAMP = DateTime(timezone=True)


def bind(value: object, type_: Type) -> ColumnElement[Any]:
    """A value from rule text as a bound parameter of the SQL type of `type_`."""
    # Typed, so the asyncpg dialect renders `$n::TYPE` and Postgres never has to guess.
    # BindParameter itself, which `bindparam()` only forwards to: hundreds per statement.
    return BindParameter(None, value, type_=_SQL_TYPES[type_], unique=True)


class _Context:
    """`catalog.SqlContext` in two passes: first it records the aggregates the metrics ask
    for, then, once the aggregate subqueries exist, it hands out their columns."""

    def __init__(self, sources: Sources, as_of: dt.datetime) -> None:
        self.sources = sources
        self._as_of = bindparam("as_of", as_of, type_=_TIMESTAMP)
        self.as_of_value = as_of
        self.order_aggs: dict[tuple[object, ...], str] = {}
        self.event_aggs: dict[tuple[object, ...], str] = {}
        self.members: dict[tuple[str, str], str] = {}
        self.order_sub: Subquery | None = None
        self.event_sub: Subquery | None = None
        self.member_sub: Subquery | None = None
        self.predicted = False  # a metric reads the predictions

    def customer(self, column: str) -> ColumnElement[Any]:
        return self.sources.customers.c[column]

    @property
    def as_of(self) -> ColumnElement[dt.datetime]:
        return self._as_of

    def end(self, ref: MetricRef) -> ColumnElement[Any]:
        if ref.ago_days is None:
            return self._as_of
        return self._time_before(ref.ago_days)

    def bind(self, value: object, type_: Type) -> ColumnElement[Any]:
        return bind(value, type_)

    def value(self, ref: MetricRef) -> ColumnElement[Any]:
        return CATALOG[ref.name].sql(ref, self)

    def orders(self, kind: OrderAgg, ref: MetricRef) -> ColumnElement[Any]:
        key = (kind, ref.window_days, ref.ago_days, ref.category, ref.channel, ref.currency)
        name = self.order_aggs.setdefault(key, f"o{len(self.order_aggs)}")
        return null() if self.order_sub is None else self.order_sub.c[name]

    def events(self, kind: EventAgg, ref: MetricRef) -> ColumnElement[Any]:
        key = (kind, ref.window_days, ref.ago_days, ref.event or "nps")
        name = self.event_aggs.setdefault(key, f"e{len(self.event_aggs)}")
        return null() if self.event_sub is None else self.event_sub.c[name]

    def membership(self, scheme: str, tier: str) -> ColumnElement[Any]:
        name = self.members.setdefault((scheme, tier), f"t{len(self.members)}")
        if self.member_sub is None:
            return null()
        return functions.coalesce(self.member_sub.c[name], false())

    def prediction(self, column: PredictionColumn) -> ColumnElement[Any]:
        self.predicted = True
        if self.sources.predictions is None:
            return null()
        return self.sources.predictions.c[column]

    # Building the aggregate subqueries from what was recorded.

    def _time_before(self, days: int) -> ColumnElement[Any]:
        # Computed here, not as `as_of - interval`: Postgres would move a day across a DST
        # change in the session's time zone; Python's timedelta, like the evaluator, does not.
        # Named by how far back it is, so a built statement can run again at another time with
        # new values from `time_parameters`.
        start = self.as_of_value - dt.timedelta(days=days)
        return BindParameter(window_parameter(days), start, type_=_TIMESTAMP)

    def _window(self, column: Any, days: int | None, ago: int | None) -> list[ColumnElement[bool]]:
        """The conditions on `column` (a time) of a window of `days` ending `ago` days back:
        `T - ago - days <= time < T - ago`."""
        conditions = []
        if days is not None:
            start = self._time_before(days + (ago or 0))
            conditions.append(_compare(column, operator.ge, start))
        if ago is not None:
            conditions.append(_compare(column, operator.lt, self._time_before(ago)))
        return conditions

    def build(self) -> None:
        if self.order_aggs:
            # Dated before T, each row classified as purchase, refund or neither (catalog).
            o = classified_orders(self.sources.orders, self._as_of)
            columns = []
            for (kind, days, ago, category, channel, currency), name in self.order_aggs.items():
                conditions = self._window(o.c.ordered_at, days, ago)  # type: ignore[arg-type]
                if category is not None:
                    conditions.append(
                        _compare(o.c.category, operator.eq, bind(category, Type.TEXT))
                    )
                if channel is not None:
                    conditions.append(_compare(o.c.channel, operator.eq, bind(channel, Type.TEXT)))
                # Orders of one original currency are summed in it (`currency "USD"`).
                amount = o.c.amount
                if currency is not None:
                    conditions.append(
                        _compare(o.c.currency, operator.eq, bind(currency, Type.TEXT))
                    )
                    amount = o.c.original_amount
                # Only the aggregate asked for is built (the generic functions `func.` finds).
                aggregate: ColumnElement[Any]
                rows: ColumnElement[Any]
                if kind == "count":
                    aggregate, rows = functions.count(), o.c.purchase
                elif kind == "sum":
                    aggregate, rows = functions.sum(amount), o.c.counted
                elif kind == "first_at":
                    aggregate, rows = functions.min(o.c.ordered_at), o.c.purchase
                elif kind == "last_at":
                    aggregate, rows = functions.max(o.c.ordered_at), o.c.purchase
                elif kind == "gross":
                    aggregate, rows = functions.sum(amount), and_(o.c.counted, ~o.c.refund)
                elif kind == "refund_sum":  # negated below: refunds are negative rows
                    aggregate, rows = functions.sum(amount), o.c.refund
                elif kind == "refund_count":
                    aggregate, rows = functions.count(), o.c.refund
                elif kind == "largest":
                    aggregate, rows = functions.max(amount), o.c.purchase
                elif kind == "categories":
                    aggregate, rows = functions.count(o.c.category.distinct()), o.c.purchase
                else:
                    raise KeyError(str(kind))
                aggregate = aggregate.filter(and_(rows, *conditions))
                if kind == "refund_sum":
                    aggregate = -aggregate
                columns.append(aggregate.label(name))
            self.order_sub = (
                select(o.c.customer_id, *columns).group_by(o.c.customer_id).subquery("order_facts")
            )
        if self.event_aggs:
            e = self.sources.events
            columns = []
            types: dict[str, None] = {}
            for (kind, days, ago, event_type), name in self.event_aggs.items():
                types.setdefault(str(event_type))
                conditions = [_compare(e.c.type, operator.eq, bind(event_type, Type.TEXT))]
                conditions += self._window(e.c.occurred_at, days, ago)  # type: ignore[arg-type]
                if kind == "count":
                    column = functions.count().filter(and_(*conditions))
                elif kind == "last_at":
                    column = functions.max(e.c.occurred_at).filter(and_(*conditions))
                else:
                    latest = array_agg(  # type: ignore[no-untyped-call]
                        aggregate_order_by(e.c.value, e.c.occurred_at.desc(), e.c.value.desc())
                    ).filter(and_(*conditions, e.c.value.is_not(None)))
                    column = latest[1]
                columns.append(column.label(name))
            self.event_sub = (
                select(e.c.customer_id, *columns)
                .where(_compare(e.c.occurred_at, operator.lt, self._as_of))
                .where(e.c.type.in_([bind(x, Type.TEXT) for x in types]))
                .group_by(e.c.customer_id)
                .subquery("event_facts")
            )
        if self.members:
            m = self.sources.memberships
            columns = [
                func.bool_or(
                    and_(
                        _compare(m.c.scheme, operator.eq, bind(scheme, Type.TEXT)),
                        _compare(m.c.tier, operator.eq, bind(tier, Type.TEXT)),
                    )
                ).label(name)
                for (scheme, tier), name in self.members.items()
            ]
            self.member_sub = (
                select(m.c.customer_id, *columns).group_by(m.c.customer_id).subquery("tiers")
            )


def window_parameter(days: int) -> str:
    """The name of the bound time ``days`` days before the evaluation time (where a window of
    that many days starts, or one that ends that long ago ends)."""
    return f"window_start_{days}"


_WINDOW_PREFIX = window_parameter(0).removesuffix("0")


def window_days(statement: Select[Any]) -> tuple[int, ...]:
    """How many days before the evaluation time each of a built statement's bound window
    bounds is."""
    names = statement.compile().binds
    return tuple(
        sorted({int(n.removeprefix(_WINDOW_PREFIX)) for n in names if n.startswith(_WINDOW_PREFIX)})
    )


def with_own_time(statement: Select[Any], suffix: str) -> Select[Any]:
    """The statement with its time parameters (`as_of`, window starts) renamed by ``suffix``,
    so that statements built for different times can share one query."""

    def rename(element: visitors.ExternallyTraversible, **kw: Any) -> BindParameter[Any] | None:
        if isinstance(element, BindParameter) and (
            element.key == "as_of" or element.key.startswith(_WINDOW_PREFIX)
        ):
            return bindparam(f"{element.key}_{suffix}", element.value, type_=element.type)
        return None

    return cast_type(Select[Any], visitors.replacement_traverse(statement, {}, rename))


def time_parameters(days: Iterable[int], as_of: dt.datetime) -> dict[str, dt.datetime]:
    """Values for a built statement's time parameters (`as_of` and the starts of its windows
    of ``days`` days), to run it at ``as_of`` instead of the time it was built for."""
    return {"as_of": as_of} | {
        window_parameter(length): as_of - dt.timedelta(days=length) for length in days
    }


def metrics_relation(refs: Sequence[MetricRef], sources: Sources, as_of: dt.datetime) -> Subquery:
    """One row per customer: `customer_id` and `m0`, `m1`, ... for refs in order."""
    ctx = _Context(sources, as_of)
    for ref in refs:
        ctx.value(ref)  # first pass: record the aggregates
    ctx.build()
    customers = sources.customers
    joined: FromClause = customers
    for sub in (ctx.order_sub, ctx.event_sub, ctx.member_sub):
        if sub is not None:
            joined = joined.outerjoin(sub, sub.c.customer_id == customers.c.id)
    predictions = sources.predictions
    if ctx.predicted and predictions is not None:
        joined = joined.outerjoin(predictions, predictions.c.customer_id == customers.c.id)
    columns = [ctx.value(ref).label(f"m{i}") for i, ref in enumerate(refs)]
    return (
        select(customers.c.id.label("customer_id"), *columns)
        .select_from(joined)
        .subquery("metrics")
    )


def metric_values_select(
    refs: Sequence[MetricRef], sources: Sources, as_of: dt.datetime
) -> Select[Any]:
    """Current metric values: columns `customer_id`, then `m0`, `m1`, ... in the order of refs."""
    metrics = metrics_relation(refs, sources, as_of)
    return select(metrics)


class _Columns(dict[MetricRef, Any]):
    """The metric columns of a statement, and the SQL built for each arithmetic node: a
    definition used by many tiers is one checked node, built once."""

    def __init__(self, columns: Mapping[MetricRef, Any]) -> None:
        super().__init__(columns)
        self.arith: dict[int, tuple[c.Arith, Any]] = {}


def _operand(node: c.Operand, columns: Mapping[MetricRef, ColumnElement[Any]]) -> Any:
    if isinstance(node, c.Ref):
        return columns[node.ref]
    elif isinstance(node, c.Const):
        return bind(node.value, node.type)
    elif isinstance(node, c.Arith):
        built = columns.arith if isinstance(columns, _Columns) else {}
        known = built.get(id(node))
        if known is not None and known[0] is node:
            return known[1]
        times = node.left.type is Type.TIMESTAMP
        sql = arith_sql(node.op, _operand(node.left, columns), _operand(node.right, columns), times)
        built[id(node)] = (node, sql)
        return sql
    else:
        assert_never(node)


_OPERATORS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# `metric <op> value`, the usual comparison of a rule, is built directly as the BinaryExpression
# SQLAlchemy's operators make for it. Their path (operate, the type's comparator, the lookup of
# the operator, _boolean_compare, coercing the value) takes some 5 µs a comparison, a tenth of
# compiling a large scheme, and for a value that is already a typed BindParameter it ends in
# exactly this constructor call. It is taken only where SQLAlchemy's own path is stock (the
# column's class and its type's comparator override none of it, and the type allows the
# comparison operators); anything else goes through the operators.
def _negations() -> dict[Any, Any]:
    """The comparison operators SQLAlchemy builds with _boolean_compare, and their negation."""
    negations = {}
    for op in _OPERATORS.values():
        function, arguments = default_comparator.operator_lookup[op.__name__]
        if function is default_comparator._boolean_compare:
            negations[op] = arguments["negate_op"]
    return negations


_NEGATIONS = _negations()
# SQLAlchemy 2.1 warns about operators outside a type's operator classes; 2.0 has none.
_OPERATOR_CLASSES = getattr(operators, "_OPERATOR_CLASSES", None)
_OPERATOR_CLASS = getattr(operators, "OperatorClass", None)
_STOCK: dict[tuple[type, Any, type], bool] = {}


def _is_stock(column: ColumnElement[Any]) -> bool:
    """Whether comparing this column with a typed bound value takes SQLAlchemy's stock path."""
    key = (type(column), column.type.comparator_factory, type(column.type))
    stock = _STOCK.get(key)
    if stock is None:
        comparator = column.type.comparator_factory
        allowed = getattr(type(column.type), "operator_classes", None)
        stock = _STOCK[key] = bool(
            type(column).operate is ColumnElement.operate
            and not column._is_collection_aggregate
            and not column.type._isnull
            and isinstance(comparator, type)
            and issubclass(comparator, TypeEngine.Comparator)
            and comparator.operate is TypeEngine.Comparator.operate
            and getattr(comparator, "_resolve_operator_lookup", None)
            is getattr(TypeEngine.Comparator, "_resolve_operator_lookup", None)
            and all(
                getattr(comparator, name) is getattr(ColumnOperators, name)
                for name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")
            )
            and (
                _OPERATOR_CLASSES is None
                or (
                    _OPERATOR_CLASS is not None
                    and isinstance(allowed, _OPERATOR_CLASS)
                    and all(_OPERATOR_CLASSES[op] & allowed for op in _NEGATIONS)
                )
            )
        )
    return stock


def _compare(left: Any, op: Any, right: Any) -> ColumnElement[bool]:
    if (
        type(right) is BindParameter
        and op in _NEGATIONS
        and not right.type._isnull
        and isinstance(left, ColumnElement)
        and _is_stock(left)
    ):
        return BinaryExpression(
            left, right, op, type_=BOOLEANTYPE, negate=_NEGATIONS[op], modifiers={}
        )
    return cast_type(ColumnElement[bool], left.operate(op, right))


def condition_sql(
    node: c.Condition, columns: Mapping[MetricRef, ColumnElement[Any]]
) -> ColumnElement[bool]:
    """A checked condition as a boolean SQL expression over the metric columns."""
    # isinstance rather than match: a hot walk (HOT_PATH_DISPATCH in dsl.tree); the most common
    # kinds first.
    if isinstance(node, c.Compare):
        left, right = _operand(node.left, columns), _operand(node.right, columns)
        return _compare(left, _OPERATORS[node.op], right)
    elif isinstance(node, c.And):
        return and_(*(condition_sql(x, columns) for x in node.items))
    elif isinstance(node, c.Or):
        return or_(*(condition_sql(x, columns) for x in node.items))
    elif isinstance(node, c.Not):
        return not_(condition_sql(node.operand, columns))
    elif isinstance(node, c.Member):
        return columns[node.ref]
    elif isinstance(node, c.IsNull):
        column: ColumnElement[Any] = _operand(node.operand, columns)
        return column.is_not(None) if node.negated else column.is_(None)
    elif isinstance(node, c.Between):
        x = _operand(node.operand, columns)
        low, high = _operand(node.low, columns), _operand(node.high, columns)
        between: ColumnElement[bool] = x.between(low, high)
        return not_(between) if node.negated else between
    elif isinstance(node, c.InList):
        x = _operand(node.operand, columns)
        member: ColumnElement[bool] = x.in_([_operand(item, columns) for item in node.items])
        return not_(member) if node.negated else member
    elif isinstance(node, c.TextMatch):
        x = _operand(node.operand, columns)
        value = _operand(node.value, columns)
        # strpos/starts_with rather than LIKE: no wildcard escaping, same as Python's `in`.
        found: ColumnElement[bool] = (
            func.strpos(x, value) > 0 if node.op == "contains" else func.starts_with(x, value)
        )
        return not_(found) if node.negated else found
    else:
        assert_never(node)


def _columns(metrics: Subquery, refs: Sequence[MetricRef]) -> _Columns:
    return _Columns({ref: metrics.c[f"m{i}"] for i, ref in enumerate(refs)})


def compile_scheme(
    scheme: c.CheckedScheme,
    sources: Sources,
    as_of: dt.datetime,
    figures: Sequence[MetricRef] = (),
) -> Select[Any]:
    """Columns `customer_id`, `tier` (NULL when no tier matches), `tier_index` (0-based) and
    `held` (the customer keeps a `keep` tier whose condition no longer holds), then `f0`,
    `f1`, ...: the values of ``figures``, metrics a caller reports per tier (a run's revenue
    is `monetary`), from the same metrics relation as the tiers, so that the sources are read
    once for both."""
    refs = [*scheme.refs, *(ref for ref in dict.fromkeys(figures) if ref not in scheme.refs)]
    metrics = metrics_relation(refs, sources, as_of)
    columns = _columns(metrics, refs)
    keeps = any(tier.keep_days is not None for tier in scheme.tiers)
    own = (
        sources.kept(scheme.key)
        if keeps and sources.kept is not None and scheme.key is not None
        else None
    )
    count = len(scheme.tiers)
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    fallback: ColumnElement[Any] = null()
    for tier in scheme.tiers:
        index = BindParameter(None, tier.index, type_=Integer, unique=True)
        if tier.condition is None:
            fallback = index
            break
        whens.append((condition_sql(tier.condition, columns), index))
        if tier.keep_days is not None and own is not None:
            # Kept: a member of the tier who qualified within the keep. Its position is
            # shifted by the number of tiers, so that `held` can be told from it below.
            since = BindParameter(
                window_parameter(tier.keep_days),
                as_of - dt.timedelta(days=tier.keep_days),
                type_=_TIMESTAMP,
            )
            kept = and_(
                _compare(own.c.tier, operator.eq, bind(tier.name, Type.TEXT)),
                _compare(own.c.qualified_at, operator.ge, since),
            )
            whens.append(
                (kept, BindParameter(None, tier.index + count, type_=Integer, unique=True))
            )
    # Conditions are evaluated once, for the index; the name is looked up from it.
    position = case(*whens, else_=fallback) if whens else fallback
    values = [columns[ref].label(f"f{i}") for i, ref in enumerate(figures)]
    source: FromClause = metrics
    if own is not None:
        source = metrics.outerjoin(own, own.c.customer_id == metrics.c.customer_id)
    ranked = (
        select(metrics.c.customer_id, cast(position, Integer).label("tier_index"), *values)
        .select_from(source)
        .subquery("ranked")
    )
    held: ColumnElement[Any] = false()
    # For a scheme that keeps, the position of a kept customer's tier is shifted (above).
    position_in = ranked.c.tier_index
    tier_index: ColumnElement[Any] = position_in
    if own is not None:
        limit = BindParameter(None, count, type_=Integer, unique=True)
        held = functions.coalesce(position_in >= limit, false())
        tier_index = case((position_in >= limit, position_in - limit), else_=position_in)
    # One bound array of names, indexed by position (Postgres arrays start at 1).
    names = bindparam(None, list(scheme.tier_names), type_=ARRAY(Text()), unique=True)
    name = Grouping(names)[tier_index + 1]
    return select(
        ranked.c.customer_id,
        name.label("tier"),
        tier_index.label("tier_index"),
        held.label("held"),
        *(ranked.c[value.name] for value in values),
    )


def compile_condition(condition: c.Condition, sources: Sources, as_of: dt.datetime) -> Select[Any]:
    """`customer_id` of every customer for whom the condition is true."""
    refs = c.condition_refs(condition)
    metrics = metrics_relation(refs, sources, as_of)
    where = condition_sql(condition, _columns(metrics, refs))
    return select(metrics.c.customer_id).where(where)
