"""The checked form of a scheme: names resolved against the catalog, every operand typed.

This is what the compiler, the evaluator, explain and the lints consume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    name: str
    index: int  # position in the scheme, 0-based
    condition: Condition | None  # None: otherwise
    span: Span


@dataclass(frozen=True)
class CheckedScheme:
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


def condition_refs(condition: Condition) -> list[MetricRef]:
    """Metric references of a condition, in order of appearance, without repeats."""
    seen: dict[MetricRef, None] = {}
    stack: list[object] = [condition]
    while stack:
        node = stack.pop()
        if isinstance(node, Ref | Member):
            seen.setdefault(node.ref)
        elif isinstance(node, And | Or):
            stack.extend(reversed(node.items))
        elif isinstance(node, Not):
            stack.append(node.operand)
        elif isinstance(node, Compare):
            stack.extend([node.right, node.left])
        elif isinstance(node, Between):
            stack.extend([node.high, node.low, node.operand])
        elif isinstance(node, InList | IsNull):
            stack.append(node.operand)
        elif isinstance(node, TextMatch):
            stack.extend([node.value, node.operand])
    return list(seen)
