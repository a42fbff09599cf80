"""The checked form of a scheme: names resolved against the catalog, every operand typed.

This is what the compiler, the evaluator, explain and the lints consume. As in `dsl.tree`, each
kind of node is a member of a union alias (`Operand`, `Condition`, `Expression`) that walks
dispatch on exhaustively, ending in `assert_never`; `children` is the one generic traversal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, assert_never

from dsl.catalog import MetricRef, Type, Value
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


Operand = Ref | Const


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
    operand: Ref
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
        case Compare():
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
