"""The syntax tree of a rule file: what was written, with where it was written.

Nodes are frozen dataclasses; every node carries a `Span`. Meaning (metric lookup, types) is
added by `dsl.checker`, which produces the checked form in `dsl.checked`.

Each kind of node is one member of a union alias (`LiteralNode`, `Arg`, `Operand`, `Condition`,
`Expression`); walks over the tree dispatch on the node exhaustively and end in `assert_never`,
so adding a class to an alias makes mypy list every walk that must handle it. `children` is the
one generic traversal.

HOT_PATH_DISPATCH: the walks run for every node of every rule (parse, check, compile, evaluate)
dispatch with an `isinstance` chain ending in `assert_never`, which mypy checks just as
exhaustively; the others use `match`. On Python 3.11 a class pattern costs about 40 % more than
`isinstance` (a successful match allocates), which made benchmarks/bench_dsl.py a few percent
slower.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal as TypingLiteral
from typing import NamedTuple, assert_never


class Span(NamedTuple):
    """1-based line and column of the first character; end is just past the last character.

    A named tuple rather than a dataclass: one is made per token, and tuples build fastest.
    """

    line: int
    column: int
    end_line: int
    end_column: int

    def cover(self, other: Span) -> Span:
        """From the start of this span to the end of `other`."""
        return Span(self.line, self.column, other.end_line, other.end_column)


Unit = TypingLiteral["day", "week", "month", "year"]


@dataclass(frozen=True)
class Number:
    value: Decimal
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class Date:
    value: dt.date
    span: Span


@dataclass(frozen=True)
class Boolean:
    value: bool
    span: Span


@dataclass(frozen=True)
class Duration:
    amount: Decimal
    unit: Unit
    span: Span


LiteralNode = Number | String | Date | Boolean | Duration


@dataclass(frozen=True)
class WindowArg:
    duration: Duration
    span: Span


@dataclass(frozen=True)
class AgoArg:
    """`90 days ago`: the window ends that long before the evaluation time."""

    duration: Duration
    span: Span


@dataclass(frozen=True)
class KeywordArg:
    """`event "complaint"`, `category "books"`, `channel "web"`, `currency "USD"`."""

    keyword: TypingLiteral["event", "category", "channel", "currency"]
    value: String
    span: Span


@dataclass(frozen=True)
class MetricArg:
    metric: Metric
    span: Span


Arg = WindowArg | AgoArg | KeywordArg | MetricArg


@dataclass(frozen=True)
class Metric:
    """A catalog name, optionally with arguments: `monetary(365 days)`."""

    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Attribute:
    """`attributes.plan`: a key of the customer's free-form attributes."""

    key: str
    span: Span


ArithOp = TypingLiteral["+", "-", "*", "/"]


@dataclass(frozen=True)
class Arith:
    """`left op right` between numbers, metrics and durations."""

    left: Operand
    op: ArithOp
    right: Operand
    span: Span
    op_span: Span


CompareOp = TypingLiteral["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Compare:
    left: Operand
    op: CompareOp
    right: Operand
    span: Span
    op_span: Span


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
    items: tuple[LiteralNode, ...]
    negated: bool
    span: Span
    list_span: Span


@dataclass(frozen=True)
class TextMatch:
    operand: Operand
    op: TypingLiteral["contains", "starts with"]
    value: Operand
    negated: bool
    span: Span


@dataclass(frozen=True)
class IsNull:
    operand: Operand
    negated: bool
    span: Span


@dataclass(frozen=True)
class InTier:
    """`in tier value.VIP`: membership of a tier of another scheme."""

    scheme: str
    tier: str
    span: Span
    scheme_span: Span
    tier_span: Span


@dataclass(frozen=True)
class Not:
    operand: Expression
    span: Span


@dataclass(frozen=True)
class And:
    items: tuple[Expression, ...]
    span: Span


@dataclass(frozen=True)
class Or:
    items: tuple[Expression, ...]
    span: Span


@dataclass(frozen=True)
class Group:
    """Parentheses as written, around a condition or a value; kept so spans and the formatter
    see them."""

    inner: Expression
    span: Span


Condition = Compare | Between | InList | TextMatch | IsNull | InTier | Not | And | Or | Group
# A bare name (`Metric` without arguments) may also stand for a defined condition, and a
# `Group` may hold a value or a condition: the checker tells them apart.
Operand = Metric | Attribute | LiteralNode | Arith | Group

# What `children` walks: conditions and the operands in them. Where the grammar allows a
# condition it allows any expression (a defined condition is a bare name); the checker says
# which are conditions.
Expression = Condition | Operand


def children(node: Expression) -> tuple[Expression, ...]:
    """The conditions and operands directly inside `node`, in the order they are written.

    A metric's children are the metrics given as its arguments (`percentile(monetary)`); the
    other arguments (windows, `event "..."`) and the items of an `in [...]` list hold only
    literals and are not walked. Leaves (literals, attributes, `in tier`) have none.
    """
    # Called for every node of every file parsed: isinstance, the most common kinds first (see
    # HOT_PATH_DISPATCH).
    if isinstance(node, Metric):
        if not node.args:
            return ()
        found: tuple[Expression, ...] = ()
        for arg in node.args:
            if isinstance(arg, MetricArg):
                found += (arg.metric,)
            elif not isinstance(arg, (WindowArg, AgoArg, KeywordArg)):
                assert_never(arg)
        return found
    if isinstance(node, (Compare, Arith)):
        return (node.left, node.right)
    if isinstance(node, (Number, String, Date, Boolean, Duration, Attribute, InTier)):
        return ()
    if isinstance(node, (And, Or)):
        return node.items
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, Group):
        return (node.inner,)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, (InList, IsNull)):
        return (node.operand,)
    if isinstance(node, TextMatch):
        return (node.operand, node.value)
    assert_never(node)


@dataclass(frozen=True)
class Tier:
    name: str
    quoted: bool
    condition: Expression | None  # None: `otherwise`
    span: Span
    name_span: Span
    keep: Keep | None = None


@dataclass(frozen=True)
class Keep:
    """`keep 90 days` after a tier's condition: as written; the checker wants a duration."""

    hold: Operand
    span: Span


@dataclass(frozen=True)
class Define:
    """`define NAME = EXPRESSION`: a named value or condition."""

    name: str
    body: Expression
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Scheme:
    key: str | None  # None: a bare list of tiers
    title: str | None
    tiers: tuple[Tier, ...]
    span: Span
    key_span: Span | None
    file: str
    # Definitions in the scheme block; those at the top of the file are in `shared`.
    defines: tuple[Define, ...] = ()
    shared: tuple[Define, ...] = ()


@dataclass(frozen=True)
class Comment:
    text: str  # including the leading `#`
    span: Span


@dataclass(frozen=True)
class RuleFile:
    file: str
    schemes: tuple[Scheme, ...]
    comments: tuple[Comment, ...]
    bare: bool  # written as a bare list of tiers, without a `scheme` block
    defines: tuple[Define, ...] = ()  # at the top of the file, for every scheme in it
