"""Rule text to the syntax tree of `dsl.tree`, with parse errors in plain words."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, cast

from lark import Lark, Token, Transformer, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.parse_tree_builder import ExpandSingleChild
from lark.parsers.lalr_analysis import Shift

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
# Text that `_ToTree._string` takes as it is: no backslash, NUL or surrogate.
_PLAIN_TEXT = re.compile(r"[^\\\0\ud800-\udfff]*")

_UNITS: dict[str, t.Unit] = {"day": "day", "week": "week", "month": "month", "year": "year"}


# Called for most tokens of every file: kept to plain attribute reads (no helper calls).
# `Span(...)` goes through the named tuple's generated __new__, a Python call; building the
# same tuple directly does not.
_new_tuple = tuple.__new__
_SPAN = t.Span


def _span(token: Any) -> t.Span:
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


_ARG_TYPES = (t.WindowArg, t.KeywordArg, t.MetricArg)


# Named tuples: built for every tier name and list, and faster to build than dataclasses.
class _TierName(NamedTuple):
    name: str
    quoted: bool
    span: t.Span


class _Items(NamedTuple):
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
        if c[1] is None:  # a bare name: no brackets, no arguments
            span = _span(c[0])
            return t.Metric(c[0].value, (), span, span)
        args = tuple(x for x in c[1:] if isinstance(x, _ARG_TYPES))
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
        items = tuple(x for x in c if not isinstance(x, Token) and x is not None)
        return _Items(items, _cover(c))

    def empty_list(self, c: list[Any]) -> _Items:
        raise self._fail(_cover(c), "the list is empty", "put at least one value in the list")

    # Tokens with content.

    def _decimal(self, token: Token) -> Decimal:
        # Fewer characters than the limit cannot hold too many digits: count only when longer.
        if (
            len(token.value) > MAX_NUMBER_DIGITS
            and sum(ch.isdigit() for ch in token.value) > MAX_NUMBER_DIGITS
        ):
            raise self._fail(_span(token), f"the number has more than {MAX_NUMBER_DIGITS} digits")
        return Decimal(token.value)

    def _string(self, token: Token) -> t.String:
        span = _span(token)
        raw = token.value[1:-1]
        if _PLAIN_TEXT.fullmatch(raw):  # no escape, NUL or surrogate: the text as written
            return t.String(raw, span)
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


@functools.cache
def _lark() -> Lark:
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
    )


_Match = Callable[[str, int, int], "re.Match[str] | None"]


class _Failed(Exception):
    """The fast loop met input it does not accept; lark's own parser explains it."""


class _FastLoop:
    """lark's contextual lexer and LALR loop for input that parses, in one tight loop.

    It runs lark's own tables: the same per-state scanners (so the same regular expressions,
    in the same order), the same parse table and the same reduction callbacks (so the same
    tree), and makes the same tokens. What it leaves out is what makes lark's loop slow in
    pure Python: a generator and a method call per token, a `LineCounter` per ignored token.
    It does not explain errors: on any input it does not accept it stops, and `_parse` runs
    lark's parser, which does. Callbacks run in the same order in both, so an error raised by
    a callback (a bad date, say) is the same either way.
    """

    def __init__(self, lark: Lark) -> None:
        frontend: Any = lark.parser
        contextual: Any = frontend.lexer
        parser: Any = frontend.parser.parser
        table = parser.parse_table
        callbacks = parser.callbacks
        self.start_states: dict[str, int] = table.start_states
        self.end_states: dict[str, int] = table.end_states
        # lark's table, split per state into shifts (and gotos) and reductions, a reduction as
        # (length, callback, rule name): the loop then never hashes a lark `Rule`. The callback
        # is None for a `?rule` with one child, which lark's ExpandSingleChild passes through.
        self.shifts: dict[int, dict[str, int]] = {}
        self.reductions: dict[int, dict[str, tuple[int, Any, str]]] = {}
        for state, actions in table.states.items():
            shifts = self.shifts[state] = {}
            reductions = self.reductions[state] = {}
            for symbol, (action, arg) in actions.items():
                if action is Shift:
                    shifts[str(symbol)] = arg
                    continue
                size, callback = len(arg.expansion), callbacks[arg]
                if size == 1 and type(callback) is ExpandSingleChild:
                    callback = None
                reductions[str(symbol)] = (size, callback, str(arg.origin.name))
        self.token_callbacks = {k: v for k, v in callbacks.items() if isinstance(k, str)}
        # The ignored terminals (whitespace, comments) are skipped by a pattern made of theirs,
        # put in front of each state's scanner so that one match skips them and reads the token
        # after them. The same as lark's scanners matching and dropping them one by one,
        # because no other terminal of the grammar starts with whitespace or `#`: where one of
        # them matches, lark's scanner matches nothing else. (Possessive: never given back.)
        ignored = frozenset(lark.lexer_conf.ignore)
        flags = lark.lexer_conf.g_regex_flags
        skip = "(?:{})*+".format(
            "|".join(lark.get_terminal(name).pattern.to_regexp() for name in sorted(ignored))
        )
        self.skip = re.compile(skip, flags).match
        # Per parser state: that match (lark's scanner is one alternation of the state's
        # terminals in lark's order; past 100 terminals it splits it, which this grammar is far
        # from), the terminals that may span lines, and lark's token callbacks (none today).
        self.lexers: dict[int, tuple[_Match, frozenset[str], dict[str, Any]]] = {}
        for state, lexer in contextual.lexers.items():
            patterns = lexer.scanner._mres  # built on first use; also fills lexer.callback
            if len(patterns) != 1 or lexer.ignore_types != ignored or ignored & set(lexer.callback):
                raise RuntimeError("the fast loop expects one scanner pattern, same ignores")
            match = re.compile(f"{skip}(?:{patterns[0].pattern})", patterns[0].flags).match
            self.lexers[state] = (match, lexer.newline_types, lexer.callback)

    def parse(self, text: str, start: str) -> Any:
        shifts, reductions, lexers = self.shifts, self.reductions, self.lexers
        shift_callbacks = self.token_callbacks
        skip = self.skip
        end_state = self.end_states[start]
        new_str = str.__new__
        state_stack = [self.start_states[start]]
        value_stack: list[Any] = []
        end = len(text)
        pos = 0
        line = 1
        line_start = 0
        token: Any = None
        while True:
            # Skip whitespace and comments (lark's ignored terminals) and lex one token with the
            # scanner of the current state (lark's ContextualLexer), in one match.
            m: Any = None
            if pos < end:
                match, newlines, token_callbacks = lexers[state_stack[-1]]
                m = match(text, pos, end)
                if m is None:
                    # Nothing more but whitespace and comments, or input lark must explain.
                    rest = skip(text, pos)
                    if rest is None or rest.end() != end:
                        raise _Failed
            if m is not None:
                type_ = m.lastgroup
                start_pos = m.start(type_)
                if start_pos != pos:
                    count = text.count("\n", pos, start_pos)
                    if count:
                        line += count
                        line_start = text.rindex("\n", pos, start_pos) + 1
                pos = m.end()
                value = text[start_pos:pos]
                start_line, start_column = line, start_pos - line_start + 1
                if type_ in newlines:
                    count = value.count("\n")
                    if count:
                        line += count
                        line_start = start_pos + value.rindex("\n") + 1
                # What lark's Token() does, without its keyword-argument checks.
                token = new_str(Token, value)
                token.type = type_
                token.start_pos = start_pos
                token.value = value
                token.line = start_line
                token.column = start_column
                token.end_line = line
                token.end_column = pos - line_start + 1
                token.end_pos = pos
                if type_ in token_callbacks:
                    token = token_callbacks[type_](token)
                is_end = False
            else:
                token = (
                    Token.new_borrow_pos("$END", "", token) if token else Token("$END", "", 0, 1, 1)
                )
                is_end = True
            # Feed it to the LALR loop (lark's ParserState.feed_token).
            type_ = token.type
            while True:
                state = state_stack[-1]
                target = shifts[state].get(type_)
                if target is not None:
                    if is_end:
                        raise _Failed  # lark asserts that the end is never shifted
                    state_stack.append(target)
                    value_stack.append(
                        token if type_ not in shift_callbacks else shift_callbacks[type_](token)
                    )
                    break
                reduction = reductions[state].get(type_)
                if reduction is None:
                    raise _Failed
                size, callback, origin = reduction
                if callback is None:  # the child is the value: only the state changes
                    del state_stack[-1]
                    state_stack.append(shifts[state_stack[-1]][origin])
                else:
                    if size:
                        children = value_stack[-size:]
                        del state_stack[-size:]
                        del value_stack[-size:]
                    else:
                        children = []
                    value_stack.append(callback(children))
                    state_stack.append(shifts[state_stack[-1]][origin])
                if is_end and state_stack[-1] == end_state:
                    return value_stack[-1]


@functools.cache
def _fast_loop() -> _FastLoop:
    return _FastLoop(_lark())


def _parse(text: str, start: str, file: str) -> Any:
    """Parse with the fast loop; on input it does not accept, parse again with lark's own
    parser, whose error (and parser state, for `_acceptable`) explains the problem."""
    try:
        try:
            return _fast_loop().parse(text, start)
        except _Failed:
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
    if "#" not in text:  # every comment starts with `#`
        return
    for number, line in enumerate(text.split("\n"), start=1):
        for match in _COMMENT.finditer(line):
            if match.group().startswith("#"):
                start = match.start() + 1
                yield t.Comment(
                    match.group().rstrip(), t.Span(number, start, number, match.end() + 1)
                )


def _check_depth(roots: Sequence[t.Scheme | t.Tier | t.Condition], file: str) -> None:
    """Reject deep nesting before anything walks the tree recursively."""
    stack: list[tuple[t.Expression, int]] = []
    for root in roots:
        match root:
            case t.Scheme():
                stack.extend((tier.condition, 1) for tier in root.tiers if tier.condition)
            case t.Tier():
                if root.condition is not None:
                    stack.append((root.condition, 1))
            case _:
                stack.append((root, 1))
    children = t.children
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            start = node.span
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
        below = children(node)
        if below:
            depth += 1
            stack.extend([(child, depth) for child in below])


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
