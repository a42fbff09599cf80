"""The checked form of a scheme: names resolved against the catalog, every operand typed.

This is what the compiler, the evaluator, explain and the lints consume. As in `dsl.tree`, each
kind of node is a member of a union alias (`Operand`, `Condition`, `Expression`) that walks
dispatch on exhaustively, ending in `assert_never`; `children` is the one generic traversal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, assert_never

from dsl.catalog import ArithOp, MetricRef, Type, Value, quote
from dsl.tree import CompareOp, Span


@dataclass(frozen=True)
class Ref:
    ref: MetricRef
    type: Type
    span: Span


@dataclass(frozen=True)
class Const:
    value: Value  # numbers are Decimal, dates are midnight-UTC datetimes, durations are days
    type: Type
    span: Span


@dataclass(frozen=True)
class Arith:
    """`left op right`; `type` is NUMBER or DAYS."""

    left: Operand
    op: ArithOp
    right: Operand
    type: Type
    span: Span


Operand = Ref | Const | Arith


@dataclass(frozen=True)
class Compare:
    left: Operand
    op: CompareOp
    right: Operand
    span: Span


@dataclass(frozen=True)
class Between:
    operand: Operand
    low: Operand
    high: Operand
    negated: bool
    span: Span


@dataclass(frozen=True)
class InList:
    operand: Operand
    items: tuple[Const, ...]
    negated: bool
    span: Span


@dataclass(frozen=True)
class TextMatch:
    operand: Operand
    op: Literal["contains", "starts with"]
    value: Operand
    negated: bool
    span: Span


@dataclass(frozen=True)
class IsNull:
    operand: Ref | Arith
    negated: bool
    span: Span


@dataclass(frozen=True)
class Member:
    """`in tier S.T`: a boolean reference that is never null."""

    ref: MetricRef
    span: Span


@dataclass(frozen=True)
class Not:
    operand: Condition
    span: Span


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]
    span: Span


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]
    span: Span


Condition = Compare | Between | InList | TextMatch | IsNull | Member | Not | And | Or


@dataclass(frozen=True)
class CheckedTier:
    """One tier of a checked scheme."""

    name: str
    index: int  # position in the scheme, 0-based
    condition: Condition | None  # None: otherwise
    span: Span
    keep_days: int | None = None
    """`keep N days`: how long a member keeps the tier after its condition stops holding."""


@dataclass(frozen=True)
class Definition:
    """A `define` the scheme's tiers use (directly or through other definitions), checked:
    its uses in the tiers are this body, in place; explain shows its value."""

    name: str
    body: Condition | Operand
    span: Span


@dataclass(frozen=True)
class CheckedScheme:
    """A checked scheme: what the compiler, the evaluator and explain run."""

    key: str | None
    title: str | None
    tiers: tuple[CheckedTier, ...]
    refs: tuple[MetricRef, ...]  # every metric the scheme reads, in first-use order
    depends_on: frozenset[str]  # keys of schemes whose tiers it reads (`in tier`)
    file: str
    span: Span
    definitions: tuple[Definition, ...] = ()  # in the order they are written

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)


# What `children` walks: conditions and the operands in them.
Expression = Condition | Operand


def children(node: Expression) -> tuple[Expression, ...]:
    """The conditions and operands directly inside `node`, in the order they are written.

    The items of an `in [...]` list are constants and are not walked. References, constants and
    `in tier` have none.
    """
    match node:
        case Compare() | Arith():
            return (node.left, node.right)
        case And() | Or():
            return node.items
        case Not():
            return (node.operand,)
        case Between():
            return (node.operand, node.low, node.high)
        case InList() | IsNull():
            return (node.operand,)
        case TextMatch():
            return (node.operand, node.value)
        case Ref() | Const() | Member():
            return ()
        case _:
            assert_never(node)


def condition_refs(condition: Condition) -> list[MetricRef]:
    """Metric references of a condition, in order of appearance, without repeats."""
    seen: dict[MetricRef, None] = {}
    stack: list[Expression] = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, Ref | Member):
            seen.setdefault(node.ref)
        else:
            stack.extend(reversed(children(node)))
    return list(seen)


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def const_text(node: Const) -> str:
    """A constant as rule text."""
    value = node.value
    if node.type is Type.TEXT and isinstance(value, str):
        return quote(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if node.type is Type.DAYS:
        return f"{value} days"
    return str(value)


def operand_text(node: Operand, context: int = 0) -> str:
    """An operand as rule text, with the parentheses precedence needs (`context`: the
    precedence of where it stands; a right operand passes one more)."""
    match node:
        case Ref():
            return node.ref.text
        case Const():
            return const_text(node)
        case Arith():
            level = _PRECEDENCE[node.op]
            text = (
                f"{operand_text(node.left, level)} {node.op} {operand_text(node.right, level + 1)}"
            )
            return f"({text})" if level < context else text
        case _:
            assert_never(node)
