"""Syntax errors in plain words: what was expected, what was found, and a hint.

lark reports a syntax error by terminal names (`COMP_OP`, `$END`); `syntax_error` turns its
exception into a `Diagnostic` that names things as a rule author writes them.
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal
from typing import get_args

from lark import Token, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsl import tree as t
from dsl.codes import Code
from dsl.errors import Diagnostic, RuleError
from dsl.grammar import KEYWORDS
from dsl.recovery import trial_copy
from dsl.transformer import token_span

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
    "CURRENCY",
    "IN",
    "$END",
    "ARITH",
]


def _phrase(terminal: str) -> str:
    if terminal == "VALUE":
        return "a metric or a value"
    if terminal == "ARITH":
        return "an arithmetic operator (+, -, *, /)"
    if terminal == "COMPARISON":
        return "a comparison (=, !=, <, <=, >, >=, between, in, contains, starts with, is null)"
    if terminal in _PUNCTUATION:
        return _PUNCTUATION[terminal]
    return f"`{terminal.lower()}`"


def describe_expected(expected: set[str]) -> str:
    """What the parser expected, in words, from lark's terminal names; the likely intent first."""
    names = set(expected)
    groups: set[str] = set()
    if {"NAME", "NUMBER"} <= names:
        names -= _VALUE_TERMINALS | {"LPAR", "NOT", "IN"}
        groups.add("VALUE")
    if "COMP_OP" in names:
        names -= _PREDICATE_TERMINALS
        groups.add("COMPARISON")
    if names & {"ADD_OP", "MUL_OP"}:
        names -= {"ADD_OP", "MUL_OP"}
        groups.add("ARITH")
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
            trial = trial_copy(state)
            try:
                trial.feed_token(Token(name, ""), is_end=name == "$END")
            except (UnexpectedInput, RuleError):
                continue
            ok.add(name)
    return ok or set(error.expected)


_UNITS = list(get_args(t.Unit))
_AFTER_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*$")  # text that ends with a number
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _slip(token: Token, text: str, expected: set[str]) -> str | None:
    """A hint for a common slip at `token`: `5,000` (a thousands separator), `30 dayz` (a
    misspelt unit), a `scheme` where its block above was not closed."""
    start = int(token.start_pos or 0)
    before = text[:start]
    if token.type == "COMMA" and _AFTER_NUMBER.search(before):
        written = before.rsplit(None, 1)[-1] if before.strip() else ""
        rest = _THOUSANDS.match(text, start - len(written.lstrip("-(["))) if written else None
        if rest is not None:
            return (
                f"numbers are written without thousands separators: {rest.group().replace(',', '')}"
            )
        return "numbers are written without thousands separators: 5000, not 5,000"
    if "UNIT" in expected and _AFTER_NUMBER.search(before) and token.type in ("NAME", "TIER_NAME"):
        close = difflib.get_close_matches(str(token).rstrip("s"), _UNITS, n=1, cutoff=0.6)
        units = "durations are written in days, weeks, months or years"
        if not close:
            return units
        number = _AFTER_NUMBER.search(before)
        one = number is not None and Decimal(number.group(1)) == 1
        return f"did you mean `{close[0]}{'' if one else 's'}`? {units}"
    if token.type == "SCHEME" and "RBRACE" in expected:
        return "close the scheme above with `}` before the next one"
    return None


def syntax_error(error: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """lark's syntax error in `text` as a diagnostic of `file`: what was expected and what was
    found there, with a hint for common slips (a keyword as a name, `==`, `&`, single quotes)."""
    if isinstance(error, UnexpectedToken):
        token = error.token
        expected = _acceptable(error)
        if token.type == "$END":
            return Diagnostic.at(
                file,
                _end_span(text),
                f"expected {describe_expected(expected)}, but the file ended",
                code=Code.SYNTAX_ERROR,
            )
        hint = _slip(token, text, expected)
        if hint is not None:
            pass
        elif str(token) in KEYWORDS and "TIER_NAME" in expected:
            hint = f'`{token}` is a reserved word; to use it as a tier name, quote it: "{token}"'
        elif str(token) in KEYWORDS and "NAME" in expected:
            hint = f"`{token}` is a reserved word, so something is missing before it"
        elif str(token) == "=" and "NAME" in expected:
            hint = "equality is written with a single `=`"
        return Diagnostic.at(
            file,
            token_span(token),
            f"expected {describe_expected(expected)}, but found {_describe_found(token)}",
            hint,
            code=Code.SYNTAX_ERROR,
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
            code=Code.UNTERMINATED_TEXT,
        )
    hints = {
        "&": "write `and`",
        "|": "write `or`",
        "'": 'text goes in double quotes: "like this"',
        "!": "write `!=` or `not`",
    }
    shown = char if char.isprintable() else repr(char)
    return Diagnostic.at(
        file,
        span,
        f"unexpected character `{shown}`",
        hints.get(char),
        code=Code.UNEXPECTED_CHARACTER,
    )
