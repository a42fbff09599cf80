"""Rule text to the syntax tree of `dsl.tree`, with parse errors in plain words."""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsl import tree as t
from dsl.errors import Diagnostic, RuleError

# Must match the keyword list excluded from NAME / TIER_NAME in grammar.lark.
KEYWORDS = frozenset(
    (
        "scheme",
        "tier",
        "when",
        "otherwise",
        "and",
        "or",
        "not",
        "between",
        "in",
        "contains",
        "starts",
        "with",
        "is",
        "null",
        "true",
        "false",
        "event",
        "category",
        "channel",
        "day",
        "days",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
    )
)

MAX_SOURCE_CHARS = 500_000
MAX_DEPTH = 40
MAX_NUMBER_DIGITS = 30

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}

_UNITS: dict[str, t.Unit] = {"day": "day", "week": "week", "month": "month", "year": "year"}


def _load_fast_parser() -> Any:
    """lark_cython, when installed, parses about twice as fast; same grammar, same results."""
    try:
        return importlib.import_module("lark_cython")
    except ImportError:
        return None


_FAST = _load_fast_parser()
# Tokens come from lark or from lark_cython; both have type, value and positions.
_TOKEN_TYPES: tuple[type[Any], ...] = (Token,) if _FAST is None else (Token, _FAST.Token)


# Called for most tokens of every file: kept to plain attribute reads (no helper calls).


def _span(token: Any) -> t.Span:
    return t.Span(token.line, token.column, token.end_line, token.end_column)


def _cover(children: list[Any]) -> t.Span:
    """From the start of the first child (token or node) to the end of the last."""
    first: Any = children[0]
    last: Any = children[-1]
    if isinstance(first, _TOKEN_TYPES):
        line, column = first.line, first.column
    else:
        line, column = first.span.line, first.span.column
    if isinstance(last, _TOKEN_TYPES):
        return t.Span(line, column, last.end_line, last.end_column)
    end = last.span
    return t.Span(line, column, end.end_line, end.end_column)


@dataclass(frozen=True)
class _TierName:
    name: str
    quoted: bool
    span: t.Span


@dataclass(frozen=True)
class _Items:
    items: tuple[t.LiteralNode, ...]
    span: t.Span


class _ToTree(Transformer[Token, Any]):
    """Builds tree nodes at each LALR reduction (no recursion, so deep input cannot overflow).

    Runs with keep_all_tokens, so children include keywords and brackets: their positions give
    every node its exact span.
    """

    def _fail(self, span: t.Span, message: str, hint: str | None = None) -> RuleError:
        # The file name is filled in by parse_file: one shared transformer serves all files.
        return RuleError([Diagnostic.at("", span, message, hint)])

    # Files and schemes.

    def file_schemes(self, c: list[Any]) -> tuple[t.Scheme, ...]:
        return tuple(c)

    def file_tiers(self, c: list[Any]) -> tuple[t.Tier, ...]:
        return tuple(c)

    def condition(self, c: list[Any]) -> t.Condition:
        return cast(t.Condition, c[0])

    def scheme(self, c: list[Any]) -> t.Scheme:
        key, title = c[1], c[2]
        tiers = tuple(x for x in c[3:] if isinstance(x, t.Tier))
        return t.Scheme(
            key=key.value,
            title=self._string(title).value if title is not None else None,
            tiers=tiers,
            span=_cover(c),
            key_span=_span(key),
            file="",
        )

    def tier_when(self, c: list[Any]) -> t.Tier:
        name: _TierName = c[1]
        return t.Tier(name.name, name.quoted, c[3], _cover(c), name.span)

    def tier_otherwise(self, c: list[Any]) -> t.Tier:
        name: _TierName = c[1]
        return t.Tier(name.name, name.quoted, None, _cover(c), name.span)

    def tier_name(self, c: list[Any]) -> _TierName:
        token: Token = c[0]
        if token.type == "STRING":
            value = self._string(token)
            if not value.value.strip():
                raise self._fail(value.span, "a tier name cannot be empty")
            return _TierName(value.value, True, value.span)
        return _TierName(token.value, False, _span(token))

    # Conditions.

    def or_(self, c: list[Any]) -> t.Or:
        return t.Or(tuple(c[0::2]), _cover(c))

    def and_(self, c: list[Any]) -> t.And:
        return t.And(tuple(c[0::2]), _cover(c))

    def not_(self, c: list[Any]) -> t.Not:
        return t.Not(c[1], _cover(c))

    def group(self, c: list[Any]) -> t.Group:
        return t.Group(c[1], _cover(c))

    def compare(self, c: list[Any]) -> t.Compare:
        op = cast(t.CompareOp, c[1].value)
        return t.Compare(c[0], op, c[2], _cover(c), _span(c[1]))

    def between(self, c: list[Any]) -> t.Between:
        # operand [NOT] "between" low "and" high
        return t.Between(c[0], c[3], c[5], c[1] is not None, _cover(c))

    def in_list(self, c: list[Any]) -> t.InList:
        items: _Items = c[3]
        return t.InList(c[0], items.items, c[1] is not None, _cover(c), items.span)

    def contains(self, c: list[Any]) -> t.TextMatch:
        return t.TextMatch(c[0], "contains", c[3], c[1] is not None, _cover(c))

    def starts_with(self, c: list[Any]) -> t.TextMatch:
        return t.TextMatch(c[0], "starts with", c[4], c[1] is not None, _cover(c))

    def is_null(self, c: list[Any]) -> t.IsNull:
        return t.IsNull(c[0], c[2] is not None, _cover(c))

    def in_tier(self, c: list[Any]) -> t.InTier:
        tier: _TierName = c[4]
        return t.InTier(c[2].value, tier.name, _cover(c), _span(c[2]), tier.span)

    # Operands.

    def metric(self, c: list[Any]) -> t.Metric:
        args = tuple(x for x in c[1:] if isinstance(x, t.WindowArg | t.KeywordArg | t.MetricArg))
        return t.Metric(c[0].value, args, _cover([x for x in c if x is not None]), _span(c[0]))

    def attribute(self, c: list[Any]) -> t.Attribute:
        return t.Attribute(c[0].value.split(".", 1)[1], _span(c[0]))

    def window_arg(self, c: list[Any]) -> t.WindowArg:
        return t.WindowArg(c[0], c[0].span)

    def _keyword_arg(self, c: list[Any]) -> t.KeywordArg:
        keyword = cast(Any, c[0].value)
        return t.KeywordArg(keyword, self._string(c[1]), _cover(c))

    event_arg = category_arg = channel_arg = _keyword_arg

    def metric_arg(self, c: list[Any]) -> t.MetricArg:
        return t.MetricArg(c[0], c[0].span)

    def number(self, c: list[Any]) -> t.Number:
        return t.Number(self._decimal(c[0]), _span(c[0]))

    def string(self, c: list[Any]) -> t.String:
        return self._string(c[0])

    def date(self, c: list[Any]) -> t.Date:
        token: Token = c[0]
        try:
            value = dt.date.fromisoformat(token.value)
        except ValueError:
            raise self._fail(
                _span(token), f"`{token}` is not a valid date", "write dates as YYYY-MM-DD"
            ) from None
        return t.Date(value, _span(token))

    def true(self, c: list[Any]) -> t.Boolean:
        return t.Boolean(True, _span(c[0]))

    def false(self, c: list[Any]) -> t.Boolean:
        return t.Boolean(False, _span(c[0]))

    def duration(self, c: list[Any]) -> t.Duration:
        unit = _UNITS[c[1].value.removesuffix("s")]
        return t.Duration(self._decimal(c[0]), unit, _cover(c))

    def value_list(self, c: list[Any]) -> _Items:
        items = tuple(x for x in c if not isinstance(x, _TOKEN_TYPES) and x is not None)
        return _Items(items, _cover(c))

    def empty_list(self, c: list[Any]) -> _Items:
        raise self._fail(_cover(c), "the list is empty", "put at least one value in the list")

    # Tokens with content.

    def _decimal(self, token: Token) -> Decimal:
        if sum(ch.isdigit() for ch in token.value) > MAX_NUMBER_DIGITS:
            raise self._fail(_span(token), f"the number has more than {MAX_NUMBER_DIGITS} digits")
        return Decimal(token.value)

    def _string(self, token: Token) -> t.String:
        span = _span(token)
        raw = token.value[1:-1]
        out: list[str] = []
        chars = iter(raw)
        for ch in chars:
            if ch == "\\":
                nxt = next(chars)  # the STRING terminal guarantees a character after `\`
                if nxt not in _ESCAPES:
                    raise self._fail(
                        span,
                        f"unknown escape `\\{nxt}` in text",
                        'inside quotes write \\" for a quote, \\\\ for a backslash, '
                        "\\n for a new line, \\t for a tab",
                    )
                out.append(_ESCAPES[nxt])
            elif ch == "\0" or "\ud800" <= ch <= "\udfff":
                raise self._fail(span, "text cannot contain a NUL or unpaired surrogate character")
            else:
                out.append(ch)
        return t.String("".join(out), span)


_GRAMMAR = Path(__file__).with_name("grammar.lark")


@functools.lru_cache(maxsize=2)
def _lark(fast: bool = False) -> Lark:
    # The LALR parser applies the transformer at each reduction: no parse tree is built and
    # nothing recurses, so deeply nested input cannot overflow the stack.
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        keep_all_tokens=True,
        maybe_placeholders=True,
        transformer=_ToTree(),
        start=["start", "condition"],
        **({"_plugins": _FAST.plugins} if fast and _FAST is not None else {}),
    )


def _parse(text: str, start: str, file: str) -> Any:
    """Parse with the fast parser; on a syntax error, parse again with lark's own, whose
    parser state `_acceptable` can inspect, to explain the error."""
    try:
        try:
            return _lark(fast=True).parse(text, start=start)
        except UnexpectedInput:
            if _FAST is None:
                raise
            return _lark().parse(text, start=start)
    except UnexpectedInput as error:
        raise RuleError([_parse_error(error, text, file)]) from None
    except RuleError as error:
        raise RuleError([replace(d, file=file) for d in error.diagnostics]) from None


# --- Errors in plain words -------------------------------------------------------------------

_VALUE_TERMINALS = {"NAME", "ATTRIBUTE", "NUMBER", "STRING", "DATE", "TRUE", "FALSE"}
_PREDICATE_TERMINALS = {"COMP_OP", "BETWEEN", "IN", "CONTAINS", "STARTS", "IS", "NOT"}
_PUNCTUATION = {
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "COMMA": "`,`",
    "DOT": "`.`",
    "UNIT": "a unit (days, weeks, months, years)",
    "TIER_NAME": "a tier name",
    "STRING": "text in double quotes",
    "NAME": "a name",
    "NUMBER": "a number",
    "DATE": "a date",
    "ATTRIBUTE": "an attribute",
    "$END": "the end of the file",
}
# The order in which expected things are listed: the likely intent first.
_ORDER = [
    "VALUE",
    "COMPARISON",
    "UNIT",
    "AND",
    "OR",
    "RPAR",
    "COMMA",
    "RSQB",
    "WHEN",
    "OTHERWISE",
    "TIER_NAME",
    "STRING",
    "NAME",
    "TIER",
    "SCHEME",
    "LBRACE",
    "RBRACE",
    "DOT",
    "NUMBER",
    "WITH",
    "NULL",
    "LSQB",
    "LPAR",
    "EVENT",
    "CATEGORY",
    "CHANNEL",
    "IN",
    "$END",
]


def _phrase(terminal: str) -> str:
    if terminal == "VALUE":
        return "a metric or a value"
    if terminal == "COMPARISON":
        return "a comparison (=, !=, <, <=, >, >=, between, in, contains, starts with, is null)"
    if terminal in _PUNCTUATION:
        return _PUNCTUATION[terminal]
    return f"`{terminal.lower()}`"


def describe_expected(expected: set[str]) -> str:
    names = set(expected)
    groups: set[str] = set()
    if {"NAME", "NUMBER"} <= names:
        names -= _VALUE_TERMINALS | {"LPAR", "NOT", "IN"}
        groups.add("VALUE")
    if "COMP_OP" in names:
        names -= _PREDICATE_TERMINALS
        groups.add("COMPARISON")
    if "TIER_NAME" in names:
        names.discard("STRING")
    names |= groups
    ordered = sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    words = [_phrase(n) for n in ordered]
    if len(words) > 1:
        return ", ".join(words[:-1]) + " or " + words[-1]
    return words[0] if words else "something else"


def _describe_found(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if str(token) in KEYWORDS:
        return f"the keyword `{token}`"
    if token.type == "STRING":
        return f"the text {token}"
    return f"`{token}`"


def _end_span(text: str) -> t.Span:
    """Just after the last thing written: where the missing part would go."""
    lines = text.rstrip().split("\n")
    return t.Span(len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 1)


def _acceptable(error: UnexpectedToken) -> set[str]:
    """What the parser would really take here.

    LALR merges states, so the table row at an error lists look-aheads of other contexts too
    (after a tier name it would offer `and`). Feeding each candidate to a copy of the parser
    state keeps only those that survive the reductions.
    """
    state = error.state
    if state is None:
        return set(error.expected)
    ok = set()
    for name in state.parse_conf.parse_table.states[state.position]:
        if name.isupper() or name == "$END":
            trial = state.copy(deepcopy_values=False)
            try:
                trial.feed_token(Token(name, ""), is_end=name == "$END")
            except (UnexpectedInput, RuleError):
                continue
            ok.add(name)
    return ok or set(error.expected)


def _parse_error(error: UnexpectedInput, text: str, file: str) -> Diagnostic:
    if isinstance(error, UnexpectedToken):
        token = error.token
        expected = _acceptable(error)
        if token.type == "$END":
            return Diagnostic.at(
                file, _end_span(text), f"expected {describe_expected(expected)}, but the file ended"
            )
        hint = None
        if str(token) in KEYWORDS and "TIER_NAME" in expected:
            hint = f'`{token}` is a reserved word; to use it as a tier name, quote it: "{token}"'
        elif str(token) in KEYWORDS and "NAME" in expected:
            hint = f"`{token}` is a reserved word, so something is missing before it"
        elif str(token) == "=" and "NAME" in expected:
            hint = "equality is written with a single `=`"
        return Diagnostic.at(
            file,
            _span(token),
            f"expected {describe_expected(expected)}, but found {_describe_found(token)}",
            hint,
        )
    assert isinstance(error, UnexpectedCharacters)
    line, column = error.line, error.column
    char = error.char
    span = t.Span(line, column, line, column + 1)
    if char == '"':
        rest = text.split("\n")[line - 1][column - 1 :]
        return Diagnostic.at(
            file,
            t.Span(line, column, line, column + len(rest)),
            "this text has no closing double quote",
            'text ends with `"` on the same line',
        )
    hints = {
        "&": "write `and`",
        "|": "write `or`",
        "'": 'text goes in double quotes: "like this"',
        "!": "write `!=` or `not`",
    }
    shown = char if char.isprintable() else repr(char)
    return Diagnostic.at(file, span, f"unexpected character `{shown}`", hints.get(char))


# --- Public API ------------------------------------------------------------------------------

_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def _comments(text: str) -> Iterator[t.Comment]:
    for number, line in enumerate(text.split("\n"), start=1):
        for match in _COMMENT.finditer(line):
            if match.group().startswith("#"):
                start = match.start() + 1
                yield t.Comment(
                    match.group().rstrip(), t.Span(number, start, number, match.end() + 1)
                )


def _children(node: object) -> tuple[object, ...]:
    if isinstance(node, t.And | t.Or):
        return node.items
    if isinstance(node, t.Not):
        return (node.operand,)
    if isinstance(node, t.Group):
        return (node.inner,)
    if isinstance(node, t.Compare):
        return (node.left, node.right)
    if isinstance(node, t.Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, t.InList | t.IsNull):
        return (node.operand,)
    if isinstance(node, t.TextMatch):
        return (node.operand, node.value)
    if isinstance(node, t.Metric):
        return tuple(a.metric for a in node.args if isinstance(a, t.MetricArg))
    return ()


def _check_depth(roots: tuple[object, ...], file: str) -> None:
    """Reject deep nesting before anything walks the tree recursively."""
    stack: list[tuple[object, int]] = []
    for root in roots:
        if isinstance(root, t.Scheme):
            stack.extend((tier.condition, 1) for tier in root.tiers)
        elif isinstance(root, t.Tier):
            stack.append((root.condition, 1))
        else:
            stack.append((root, 1))
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            start = cast(t.Span, node.span)  # type: ignore[attr-defined]
            span = t.Span(start.line, start.column, start.line, start.column + 1)
            raise RuleError(
                [
                    Diagnostic.at(
                        file,
                        span,
                        f"the rule is nested more than {MAX_DEPTH} levels deep",
                        "split it into simpler tiers",
                    )
                ]
            )
        stack.extend((child, depth + 1) for child in _children(node))


def parse_file(text: str, file: str = "<rules>") -> t.RuleFile:
    """Parse a rule file; raises `RuleError` with a positioned diagnostic on any problem."""
    if len(text) > MAX_SOURCE_CHARS:
        raise RuleError(
            [
                Diagnostic.at(
                    file,
                    t.Span(1, 1, 1, 2),
                    f"the rule text is longer than {MAX_SOURCE_CHARS:,} characters",
                    "split it into several files",
                )
            ]
        )
    parsed = _parse(text, "start", file)
    _check_depth(parsed, file)
    items = tuple(replace(x, file=file) if isinstance(x, t.Scheme) else x for x in parsed)
    if items and isinstance(items[0], t.Scheme):
        return t.RuleFile(file, items, tuple(_comments(text)), bare=False)
    tiers = cast(tuple[t.Tier, ...], items)
    span = tiers[0].span.cover(tiers[-1].span) if tiers else t.Span(1, 1, 1, 1)
    scheme = t.Scheme(None, None, tiers, span, None, file) if tiers else None
    return t.RuleFile(file, (scheme,) if scheme else (), tuple(_comments(text)), bare=True)


def parse_rules(text: str, file: str = "<rules>") -> list[t.Scheme]:
    """The schemes of a rule file; a bare list of `tier` lines is one scheme without a key."""
    return list(parse_file(text, file).schemes)


def parse_condition(text: str, file: str = "<condition>") -> t.Condition:
    """A bare condition such as `monetary > 1000 and region = "east"`."""
    if len(text) > MAX_SOURCE_CHARS:
        raise RuleError(
            [
                Diagnostic.at(
                    file,
                    t.Span(1, 1, 1, 2),
                    f"the condition is longer than {MAX_SOURCE_CHARS:,} characters",
                )
            ]
        )
    parsed = cast(t.Condition, _parse(text, "condition", file))
    _check_depth((parsed,), file)
    return parsed
