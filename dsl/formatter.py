"""One canonical layout for rule files (`tierwise rules fmt`); idempotent, keeps comments.

Layout: one tier per line, tier names padded so `when` lines up within a scheme, two-space
indentation inside `scheme` blocks, a blank line between schemes, single spaces around
operators, only the parentheses precedence needs (plus those after `not`, for readability).
A comment stays on the line of what it followed, or before what it preceded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

from dsl import tree as t
from dsl.catalog import number_text, quote, quote_name
from dsl.errors import display_width
from dsl.parser import parse_file

_OR, _AND, _NOT, _ATOM = 1, 2, 3, 4
_SUM, _PRODUCT, _VALUE = 5, 6, 7
_ARITH = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT}


def _precedence(node: t.Expression) -> int:
    match node:
        case t.Or():
            return _OR
        case t.And():
            return _AND
        case t.Not():
            return _NOT
        case t.Compare() | t.Between() | t.InList() | t.TextMatch() | t.IsNull() | t.InTier():
            return _ATOM
        case t.Arith():
            return _ARITH[node.op]
        case t.Group():
            return _precedence(_unwrap(node))
        case (
            t.Metric() | t.Attribute() | t.Number() | t.String() | t.Date() | t.Boolean()
        ) | t.Duration():
            return _VALUE
        case _:
            assert_never(node)


def _unwrap(node: t.Expression) -> t.Expression:
    while isinstance(node, t.Group):
        node = node.inner
    return node


def condition_text(node: t.Expression, context: int = _OR) -> str:
    """A condition (or a value) in canonical rule text, parenthesized when it binds looser
    than `context` (the precedence of where it stands)."""
    node = _unwrap(node)
    text = _expression(node)
    precedence = _precedence(node)
    # A value where a condition stands needs no parentheses; a condition inside arithmetic
    # (or compared) does.
    if precedence < context and not (context <= _ATOM and precedence > _ATOM):
        return f"({text})"
    return text


def _expression(node: t.Expression) -> str:
    match node:
        case t.Or():
            # `or` and `and` are associative: nested ones need no parentheses of their own.
            return " or ".join(condition_text(x, _OR) for x in node.items)
        case t.And():
            return " and ".join(condition_text(x, _AND) for x in node.items)
        case t.Not():
            inner = _unwrap(node.operand)
            if isinstance(inner, t.InTier | t.Not) or _precedence(inner) > _ATOM:
                return "not " + condition_text(inner, _NOT)
            return f"not ({condition_text(inner)})"
        case t.Group():
            return condition_text(node.inner)
        case t.Compare():
            return f"{operand_text(node.left)} {node.op} {operand_text(node.right)}"
        case t.Between():
            neg = "not " if node.negated else ""
            return (
                f"{operand_text(node.operand)} {neg}between {operand_text(node.low)} "
                f"and {operand_text(node.high)}"
            )
        case t.InList():
            neg = "not " if node.negated else ""
            items = ", ".join(operand_text(x) for x in node.items)
            return f"{operand_text(node.operand)} {neg}in [{items}]"
        case t.TextMatch():
            neg = "not " if node.negated else ""
            return f"{operand_text(node.operand)} {neg}{node.op} {operand_text(node.value)}"
        case t.IsNull():
            neg = "not " if node.negated else ""
            return f"{operand_text(node.operand)} is {neg}null"
        case t.InTier():
            return f"in tier {node.scheme}.{quote_name(node.tier)}"
        case t.Arith():
            # Left-associative: a right operand of the same precedence keeps its parentheses.
            level = _ARITH[node.op]
            left = condition_text(node.left, level)
            right = condition_text(node.right, level + 1)
            return f"{left} {node.op} {right}"
        case (
            t.Metric() | t.Attribute() | t.Number() | t.String() | t.Date() | t.Boolean()
        ) | t.Duration():
            return _value(node)
        case _:
            assert_never(node)


def operand_text(node: t.Operand) -> str:
    """An operand in canonical rule text."""
    return condition_text(node, _SUM)


def _value(node: t.Metric | t.Attribute | t.LiteralNode) -> str:
    match node:
        case t.Metric():
            if not node.args:
                return node.name
            return f"{node.name}({', '.join(_arg(a) for a in node.args)})"
        case t.Attribute():
            return f"attributes.{node.key}"
        case t.Number():
            return number_text(node.value)
        case t.String():
            return quote(node.value)
        case t.Date():
            return node.value.isoformat()
        case t.Boolean():
            return "true" if node.value else "false"
        case t.Duration():
            return _duration(node)
        case _:
            assert_never(node)


def _duration(node: t.Duration) -> str:
    plural = "" if node.amount == 1 else "s"
    return f"{number_text(node.amount)} {node.unit}{plural}"


def _arg(arg: t.Arg) -> str:
    match arg:
        case t.WindowArg():
            return _duration(arg.duration)
        case t.AgoArg():
            return _duration(arg.duration) + " ago"
        case t.KeywordArg():
            return f"{arg.keyword} {quote(arg.value.value)}"
        case t.MetricArg():
            return _value(arg.metric)
        case _:
            assert_never(arg)


@dataclass
class _Anchor:
    """A place output is written for, with the comments that go before and after it."""

    start: tuple[int, int]
    end: tuple[int, int]
    leading: list[str] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)


def _attach(anchors: list[_Anchor], comments: tuple[t.Comment, ...]) -> list[str]:
    """Distribute comments over anchors; returns those after the last anchor."""
    rest: list[str] = []
    for comment in comments:
        at = (comment.span.line, comment.span.column)
        before = [a for a in anchors if a.end <= at]
        if before and before[-1].end[0] == at[0]:
            before[-1].trailing.append(comment.text)
            continue
        after = [a for a in anchors if a.start > at]
        (after[0].leading if after else rest).append(comment.text)
    return rest


def _line(indent: str, text: str, anchor: _Anchor) -> list[str]:
    out = [indent + c for c in anchor.leading]
    out.append(indent + text + "".join("  " + c for c in anchor.trailing))
    return out


def format_file(rule_file: t.RuleFile) -> str:
    """A parsed file in the canonical layout, comments kept; "" when there is nothing in it."""
    anchors: list[_Anchor] = []
    plan: list[tuple[str, object, _Anchor]] = []

    def defines(items: tuple[t.Define, ...]) -> None:
        for define in items:
            span = define.span
            anchor = _Anchor((span.line, span.column), (span.end_line, span.end_column))
            anchors.append(anchor)
            plan.append(("define", define, anchor))

    defines(rule_file.defines)
    for scheme in rule_file.schemes:
        if not rule_file.bare:
            key = scheme.key_span or scheme.span
            head = _Anchor((scheme.span.line, scheme.span.column), (key.end_line, key.end_column))
            anchors.append(head)
            plan.append(("head", scheme, head))
        defines(scheme.defines)
        for tier in scheme.tiers:
            anchor = _Anchor(
                (tier.span.line, tier.span.column), (tier.span.end_line, tier.span.end_column)
            )
            anchors.append(anchor)
            plan.append(("tier", tier, anchor))
        if not rule_file.bare:
            end = (scheme.span.end_line, scheme.span.end_column)
            close = _Anchor((end[0], end[1] - 1), end)
            anchors.append(close)
            plan.append(("close", scheme, close))
    rest = _attach(anchors, rule_file.comments)
    out: list[str] = []
    indent = "" if rule_file.bare else "  "
    width = 0
    for kind, item, anchor in plan:
        if kind == "define":
            assert isinstance(item, t.Define)
            at_top = any(item is d for d in rule_file.defines)
            text = f"define {item.name} = {condition_text(item.body)}"
            out.extend(_line("" if at_top else indent, text, anchor))
        elif kind == "head":
            assert isinstance(item, t.Scheme)
            if out:
                out.append("")
            width = max((display_width(quote_name(x.name)) for x in item.tiers), default=0)
            title = f" {quote(item.title)}" if item.title is not None else ""
            out.extend(_line("", f"scheme {item.key}{title} {{", anchor))
        elif kind == "close":
            out.extend(indent + c for c in anchor.leading)
            out.append("}" + "".join("  " + c for c in anchor.trailing))
        else:
            assert isinstance(item, t.Tier)
            if rule_file.bare and not width:
                width = max(display_width(quote_name(x.name)) for x in rule_file.schemes[0].tiers)
            name = quote_name(item.name)
            pad = " " * (width - display_width(name))
            rule = (
                f"when {condition_text(item.condition)}"
                if item.condition is not None
                else "otherwise"
            )
            if item.keep is not None:
                rule += f" keep {operand_text(item.keep.hold)}"
            out.extend(_line(indent, f"tier {name}{pad} {rule}", anchor))
    out.extend(rest)
    return "\n".join(out) + "\n" if out else ""


def format_text(text: str, file: str = "<rules>") -> str:
    """Parse and lay out rule text; raises `RuleError` when it does not parse."""
    return format_file(parse_file(text, file))
