"""lark's parse to the nodes of `dsl.tree`: the transformer lark calls at each reduction.

Also where the content of tokens is read: numbers (exact decimals, at most `MAX_NUMBER_DIGITS`
digits), text with its escapes, dates, and names and text in Unicode's composed form (NFC), so
that `café` is one name whether its accent was typed as one character or two. Spans stay those
of the text as written. Problems are raised as `RuleError` without a file name; `dsl.parser`
fills it in.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal
from typing import Any, NamedTuple, cast, get_args

from lark import Token, Transformer

from dsl import tree as t
from dsl.codes import Code
from dsl.errors import Diagnostic, RuleError

MAX_NUMBER_DIGITS = 30

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
# Text that `ToTree._string` takes as it is: no backslash, NUL or surrogate.
_PLAIN_TEXT = re.compile(r"[^\\\0\ud800-\udfff]*")

_UNITS: dict[str, t.Unit] = {"day": "day", "week": "week", "month": "month", "year": "year"}


def nfc(text: str) -> str:
    """`text` in Unicode's composed normal form (NFC); ASCII, the usual case, as it is."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


# Called for most tokens of every file: kept to plain attribute reads (no helper calls).
# `Span(...)` goes through the named tuple's generated __new__, a Python call; building the
# same tuple directly does not.
_new_tuple = tuple.__new__
_SPAN = t.Span


def token_span(token: Any) -> t.Span:
    """Where a lark token is: its 1-based line and column, and the end just past it."""
    return _new_tuple(_SPAN, (token.line, token.column, token.end_line, token.end_column))


def _cover(children: list[Any]) -> t.Span:
    """From the start of the first child (token or node) to the end of the last."""
    first: Any = children[0]
    last: Any = children[-1]
    if isinstance(first, Token):
        line, column = first.line, first.column
    else:
        line, column = first.span.line, first.span.column
    if isinstance(last, Token):
        return _new_tuple(_SPAN, (line, column, last.end_line, last.end_column))
    end = last.span
    return _new_tuple(_SPAN, (line, column, end.end_line, end.end_column))


_ARG_TYPES = get_args(t.Arg)


# Named tuples: built for every tier name and list, and faster to build than dataclasses.
class _TierName(NamedTuple):
    name: str
    quoted: bool
    span: t.Span


class _Items(NamedTuple):
    items: tuple[t.LiteralNode, ...]
    span: t.Span


class ToTree(Transformer[Token, Any]):
    """Builds tree nodes at each LALR reduction (no recursion, so deep input cannot overflow).

    Runs with keep_all_tokens, so children include keywords and brackets: their positions give
    every node its exact span.
    """

    def _fail(
        self, span: t.Span, message: str, hint: str | None = None, *, code: Code
    ) -> RuleError:
        # The file name is filled in by dsl.parser: one shared transformer serves all files.
        return RuleError([Diagnostic.at("", span, message, hint, code=code)])

    # Files and schemes.

    # A file is its definitions, then its schemes or its tiers (dsl.parser tells them apart).

    def file_schemes(self, c: list[Any]) -> tuple[t.Define | t.Scheme, ...]:
        return tuple(c)

    def file_tiers(self, c: list[Any]) -> tuple[t.Define | t.Tier, ...]:
        return tuple(c)

    def condition(self, c: list[Any]) -> t.Expression:
        return cast(t.Expression, c[0])

    def define(self, c: list[Any]) -> t.Define:
        # "define" NAME "=" body
        return t.Define(nfc(c[1].value), c[3], _cover(c), token_span(c[1]))

    def scheme(self, c: list[Any]) -> t.Scheme:
        key, title = c[1], c[2]
        tiers = tuple(x for x in c[3:] if isinstance(x, t.Tier))
        return t.Scheme(
            key=nfc(key.value),
            title=self._string(title).value if title is not None else None,
            tiers=tiers,
            span=_cover(c),
            key_span=token_span(key),
            file="",
            defines=tuple(x for x in c[3:] if isinstance(x, t.Define)),
        )

    def tier_when(self, c: list[Any]) -> t.Tier:
        name: _TierName = c[1]
        span = _cover(c if c[4] is not None else c[:4])
        return t.Tier(name.name, name.quoted, c[3], span, name.span, c[4])

    def tier_otherwise(self, c: list[Any]) -> t.Tier:
        name: _TierName = c[1]
        span = _cover(c if c[3] is not None else c[:3])
        return t.Tier(name.name, name.quoted, None, span, name.span, c[3])

    def keep(self, c: list[Any]) -> t.Keep:
        return t.Keep(c[1], _cover(c))

    def tier_name(self, c: list[Any]) -> _TierName:
        token: Token = c[0]
        if token.type == "STRING":
            value = self._string(token)
            if not value.value.strip():
                raise self._fail(
                    value.span, "a tier name cannot be empty", code=Code.EMPTY_TIER_NAME
                )
            return _TierName(value.value, True, value.span)
        return _TierName(nfc(token.value), False, token_span(token))

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
        return t.Compare(c[0], op, c[2], _cover(c), token_span(c[1]))

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
        return t.InTier(nfc(c[2].value), tier.name, _cover(c), token_span(c[2]), tier.span)

    # Operands.

    def arith(self, c: list[Any]) -> t.Arith:
        op = cast(t.ArithOp, c[1].value)
        return t.Arith(c[0], op, c[2], _cover(c), token_span(c[1]))

    def metric(self, c: list[Any]) -> t.Metric:
        if c[1] is None:  # a bare name: no brackets, no arguments
            span = token_span(c[0])
            return t.Metric(nfc(c[0].value), (), span, span)
        args = tuple(x for x in c[1:] if isinstance(x, _ARG_TYPES))
        span = _cover([x for x in c if x is not None])
        return t.Metric(nfc(c[0].value), args, span, token_span(c[0]))

    def attribute(self, c: list[Any]) -> t.Attribute:
        return t.Attribute(nfc(c[0].value.split(".", 1)[1]), token_span(c[0]))

    def window_arg(self, c: list[Any]) -> t.WindowArg:
        return t.WindowArg(c[0], c[0].span)

    def ago_arg(self, c: list[Any]) -> t.AgoArg:
        return t.AgoArg(c[0], _cover(c))

    def _keyword_arg(self, c: list[Any]) -> t.KeywordArg:
        keyword = cast(Any, c[0].value)
        return t.KeywordArg(keyword, self._string(c[1]), _cover(c))

    event_arg = category_arg = channel_arg = currency_arg = _keyword_arg

    def metric_arg(self, c: list[Any]) -> t.MetricArg:
        return t.MetricArg(c[0], c[0].span)

    def number(self, c: list[Any]) -> t.Number:
        return t.Number(self._decimal(c[0]), token_span(c[0]))

    def string(self, c: list[Any]) -> t.String:
        return self._string(c[0])

    def date(self, c: list[Any]) -> t.Date:
        token: Token = c[0]
        try:
            value = dt.date.fromisoformat(token.value)
        except ValueError:
            raise self._fail(
                token_span(token),
                f"`{token}` is not a valid date",
                "write dates as YYYY-MM-DD",
                code=Code.INVALID_DATE,
            ) from None
        return t.Date(value, token_span(token))

    def true(self, c: list[Any]) -> t.Boolean:
        return t.Boolean(True, token_span(c[0]))

    def false(self, c: list[Any]) -> t.Boolean:
        return t.Boolean(False, token_span(c[0]))

    def duration(self, c: list[Any]) -> t.Duration:
        unit = _UNITS[c[1].value.removesuffix("s")]
        return t.Duration(self._decimal(c[0]), unit, _cover(c))

    def value_list(self, c: list[Any]) -> _Items:
        items = tuple(x for x in c if not isinstance(x, Token) and x is not None)
        return _Items(items, _cover(c))

    def empty_list(self, c: list[Any]) -> _Items:
        raise self._fail(
            _cover(c),
            "the list is empty",
            "put at least one value in the list",
            code=Code.EMPTY_LIST,
        )

    # Tokens with content.

    def _decimal(self, token: Token) -> Decimal:
        # Fewer characters than the limit cannot hold too many digits: count only when longer.
        if (
            len(token.value) > MAX_NUMBER_DIGITS
            and sum(ch.isdigit() for ch in token.value) > MAX_NUMBER_DIGITS
        ):
            raise self._fail(
                token_span(token),
                f"the number has more than {MAX_NUMBER_DIGITS} digits",
                code=Code.NUMBER_TOO_LONG,
            )
        return Decimal(token.value)

    def _string(self, token: Token) -> t.String:
        span = token_span(token)
        raw = token.value[1:-1]
        if _PLAIN_TEXT.fullmatch(raw):  # no escape, NUL or surrogate: the text as written
            return t.String(nfc(raw), span)
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
                        code=Code.INVALID_TEXT,
                    )
                out.append(_ESCAPES[nxt])
            elif ch == "\0" or "\ud800" <= ch <= "\udfff":
                raise self._fail(
                    span,
                    "text cannot contain a NUL or unpaired surrogate character",
                    code=Code.INVALID_TEXT,
                )
            else:
                out.append(ch)
        return t.String(nfc("".join(out)), span)
