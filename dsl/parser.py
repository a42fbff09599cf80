"""Rule text to the syntax tree of `dsl.tree`, with parse errors in plain words.

The public parser. Its parts, one concern each: `grammar` (the lark grammar and its keywords),
`transformer` (lark's reductions to tree nodes), `parser_fast` (a fast LALR loop over lark's
tables for text that parses), `syntax_errors` (lark's errors in a rule author's words).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, cast

from lark import Lark, UnexpectedInput

from dsl import tree as t
from dsl.errors import Diagnostic, RuleError
from dsl.grammar import grammar_text
from dsl.parser_fast import Failed, FastLoop
from dsl.syntax_errors import syntax_error
from dsl.transformer import ToTree

MAX_SOURCE_CHARS = 500_000
MAX_DEPTH = 40


@functools.cache
def _lark() -> Lark:
    # The LALR parser applies the transformer at each reduction: no parse tree is built and
    # nothing recurses, so deeply nested input cannot overflow the stack.
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        keep_all_tokens=True,
        maybe_placeholders=True,
        transformer=ToTree(),
        start=["start", "condition"],
    )


@functools.cache
def _fast_loop() -> FastLoop:
    return FastLoop(_lark())


def _parse(text: str, start: str, file: str) -> Any:
    """Parse with the fast loop; on input it does not accept, parse again with lark's own
    parser, whose error (and parser state) `syntax_error` explains."""
    try:
        try:
            return _fast_loop().parse(text, start)
        except Failed:
            return _lark().parse(text, start=start)
    except UnexpectedInput as error:
        raise RuleError([syntax_error(error, text, file)]) from None
    except RuleError as error:
        raise RuleError([replace(d, file=file) for d in error.diagnostics]) from None


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
