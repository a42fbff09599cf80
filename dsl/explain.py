"""Why a customer is in a tier: every tier in order, every clause with its actual value.

The result is plain frozen dataclasses of JSON values (`dataclasses.asdict` gives JSON):
decimals and times are strings, so nothing is rounded on the way to a frontend.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from decimal import Decimal
from functools import partial
from typing import Literal, assert_never

from dsl import checked as c
from dsl.catalog import Type, Value, metric
from dsl.evaluator import Kept, Truth, Values, evaluate_condition, keeps, operand_value

JsonValue = str | int | bool | None | list["JsonValue"]
Outcome = Literal["true", "false", "unknown"]


@dataclass(frozen=True)
class ClauseTrace:
    """One clause of a tier's condition for one customer, and whether it held."""

    text: str  # the clause in canonical rule text
    result: Outcome
    metric: str | None = None  # for a comparison: the metric's rule text
    actual: JsonValue = None  # its value for this customer
    operator: str | None = None  # "=", "between", "in", "contains", "is null", ...
    expected: JsonValue = None  # the value(s) it was compared with
    unit: str | None = None  # of `actual` and `expected`: the metric's ("currency", "days", ...)
    children: tuple[ClauseTrace, ...] = ()  # for and / or / not
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class TierTrace:
    """One tier of a scheme for one customer."""

    name: str
    index: int
    result: Outcome | Literal["otherwise"]
    matched: bool  # this tier took the customer
    clause: ClauseTrace | None  # None for `otherwise`
    kept: str | None = None  # "kept: qualified last on DATE, held until DATE" (`keep N days`)


@dataclass(frozen=True)
class DefinitionTrace:
    """A definition the scheme uses (`define NAME = ...`) and its value for one customer: a
    value's (`value`), or a condition's outcome (`result`)."""

    name: str
    text: str  # its body in canonical rule text
    value: JsonValue = None
    result: Outcome | None = None  # for a condition
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Explanation:
    """Every tier of a scheme for one customer, in order, and the tier that took them."""

    scheme: str | None
    tier: str | None  # the tier the customer is in; None when no tier matches
    tier_index: int | None
    tiers: tuple[TierTrace, ...]
    definitions: tuple[DefinitionTrace, ...] = ()

    def to_json(self) -> dict[str, object]:
        """As nested JSON objects (`dataclasses.asdict`)."""
        return asdict(self)


def _outcome(value: Truth) -> Outcome:
    return "unknown" if value is None else "true" if value else "false"


def json_value(value: Value) -> JsonValue:
    """A metric value as JSON: decimals as strings and times in ISO 8601, nothing rounded."""
    if isinstance(value, Decimal):
        return format(value, "f")  # never the exponent form (`0E-10`)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _const_text(node: c.Const) -> str:
    return c.const_text(node)


def _text(node: c.Operand) -> str:
    return c.operand_text(node)


def _side(node: c.Operand, values: Values) -> tuple[str | None, JsonValue]:
    """The metric's rule text (None for a constant) and the operand's value."""
    match node:
        case c.Ref():
            return node.ref.text, json_value(values[node.ref])
        case c.Const():
            return None, json_value(node.value)
        case c.Arith():
            return c.operand_text(node), json_value(operand_value(node, values))
        case _:
            assert_never(node)


def _unit(node: c.Operand) -> str | None:
    """The unit a compared value is in: a metric's (the catalog's), else days for durations."""
    if isinstance(node, c.Ref):
        return metric(node.ref).unit or None
    return "days" if node.type is Type.DAYS else None


def _alike(expected: JsonValue, actual: JsonValue, node: c.Operand) -> JsonValue:
    """A constant in the JSON type of what it is compared with: `frequency >= 2` and
    `recency > 90 days` show 2 and 90 as numbers, like the customer's 0 and 100, not "2"."""
    whole = isinstance(actual, int) or (actual is None and node.type is Type.DAYS)
    if whole and isinstance(expected, str) and expected.lstrip("-").isdigit():
        return int(expected)
    return expected


def _trace(node: c.Condition, values: Values) -> ClauseTrace:
    result = _outcome(evaluate_condition(node, values))
    clause = partial(ClauseTrace, line=node.span.line, column=node.span.column)
    match node:
        case c.And() | c.Or():
            children = tuple(_trace(x, values) for x in node.items)
            word = " and " if isinstance(node, c.And) else " or "
            text = word.join(
                f"({x.text})" if isinstance(y, c.And | c.Or) else x.text
                for x, y in zip(children, node.items, strict=True)
            )
            return clause(text, result, children=children)
        case c.Not():
            child = _trace(node.operand, values)
            return clause(f"not ({child.text})", result, children=(child,))
        case c.Member():
            return clause(
                node.ref.text,
                result,
                node.ref.text,
                json_value(values[node.ref]),
                "in tier",
                f"{node.ref.scheme}.{node.ref.tier}",
            )
        case c.IsNull():
            op = "is not null" if node.negated else "is null"
            metric, actual = _side(node.operand, values)
            return clause(f"{_text(node.operand)} {op}", result, metric, actual, op)
        case c.Compare():
            left_metric, left = _side(node.left, values)
            right_metric, right = _side(node.right, values)
            text = f"{_text(node.left)} {node.op} {_text(node.right)}"
            if left_metric is None and right_metric is not None:
                # Shown metric-first: `5 < x` reads as x > 5.
                flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(node.op, node.op)
                expected = _alike(left, right, node.right)
                return clause(
                    text, result, right_metric, right, flipped, expected, _unit(node.right)
                )
            if isinstance(node.right, c.Const):
                right = _alike(right, left, node.left)
            return clause(text, result, left_metric, left, node.op, right, _unit(node.left))
        case c.Between():
            neg = "not " if node.negated else ""
            metric_text, actual = _side(node.operand, values)
            text = f"{_text(node.operand)} {neg}between {_text(node.low)} and {_text(node.high)}"
            expected = [
                _alike(_side(bound, values)[1], actual, node.operand)
                if isinstance(bound, c.Const)
                else _side(bound, values)[1]
                for bound in (node.low, node.high)
            ]
            unit = _unit(node.operand)
            return clause(text, result, metric_text, actual, f"{neg}between", expected, unit)
        case c.InList():
            neg = "not " if node.negated else ""
            metric, actual = _side(node.operand, values)
            items = [json_value(x.value) for x in node.items]
            listed = ", ".join(_const_text(x) for x in node.items)
            text = f"{_text(node.operand)} {neg}in [{listed}]"
            return clause(text, result, metric, actual, f"{neg}in", items)
        case c.TextMatch():
            neg = "not " if node.negated else ""
            metric, actual = _side(node.operand, values)
            text = f"{_text(node.operand)} {neg}{node.op} {_text(node.value)}"
            expected_text = _side(node.value, values)[1]
            return clause(text, result, metric, actual, f"{neg}{node.op}", expected_text)
        case _:
            assert_never(node)


def explain(
    scheme: c.CheckedScheme,
    values: Values,
    kept: Kept | None = None,
    as_of: dt.datetime | None = None,
) -> Explanation:
    """Trace every tier of the scheme for one customer's metric values; ``kept`` (their
    current tier and when they last qualified) at ``as_of`` says whether a `keep` tier keeps
    them."""
    tiers: list[TierTrace] = []
    winner: c.CheckedTier | None = None
    for tier in scheme.tiers:
        if tier.condition is None:
            matched = winner is None
            tiers.append(TierTrace(tier.name, tier.index, "otherwise", matched, None))
        else:
            clause = _trace(tier.condition, values)
            matched = winner is None and clause.result == "true"
            held = None
            if winner is None and not matched and as_of is not None and keeps(tier, kept, as_of):
                assert kept is not None and kept.qualified_at is not None
                until = kept.qualified_at + dt.timedelta(days=tier.keep_days or 0)
                held = (
                    f"kept: qualified last on {kept.qualified_at.date().isoformat()}, "
                    f"held until {until.date().isoformat()}"
                )
                matched = True
            tiers.append(TierTrace(tier.name, tier.index, clause.result, matched, clause, held))
        if matched:
            winner = tier
    return Explanation(
        scheme.key,
        winner.name if winner else None,
        winner.index if winner else None,
        tuple(tiers),
        tuple(_definition(d, values) for d in scheme.definitions),
    )


def _definition(definition: c.Definition, values: Values) -> DefinitionTrace:
    body, span = definition.body, definition.span
    if isinstance(body, c.Ref | c.Const | c.Arith):
        value = json_value(operand_value(body, values))
        return DefinitionTrace(
            definition.name, c.operand_text(body), value, None, span.line, span.column
        )
    trace = _trace(body, values)
    return DefinitionTrace(definition.name, trace.text, None, trace.result, span.line, span.column)
