"""Rule text to the syntax tree of `dsl.tree`, with parse errors in plain words.

The public parser. Its parts, one concern each: `grammar` (the lark grammar and its keywords),
`transformer` (lark's reductions to tree nodes), `parser_fast` (a fast LALR loop over lark's
tables for text that parses), `recovery` (reading on past syntax errors, so that every one is
reported), `syntax_errors` (lark's errors in a rule author's words).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from lark import Lark, UnexpectedInput

from dsl import tree as t
from dsl.codes import Code
from dsl.errors import Diagnostic, RuleError, position
from dsl.grammar import grammar_text
from dsl.parser_fast import Failed, FastLoop
from dsl.recovery import Recovery
from dsl.syntax_errors import syntax_error
from dsl.transformer import ToTree, nfc

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
        cache=_cache_file(),
    )


def _cache_file() -> str | bool:
    """Where lark keeps its analysis of the grammar between processes, or False for none.

    Analysing the grammar is most of what checking a small file costs in a new process (the
    CLI's `rules check`); lark stores the result with a hash of the grammar text, options and
    versions, and analyses again when it differs (or the file is unreadable). Not lark's
    default place, the shared temporary directory: the file is a pickle, so it lives in the
    user's own cache directory. None when that cannot be made."""
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    if not os.path.isabs(base):  # no home directory: not the current one either
        return False
    directory = Path(base, "tierwise")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = directory.stat()
    except OSError:
        return False
    # Lark unpickles the file before it checks the hash: only a directory of this user's
    # that nobody else can write into is trusted.
    if status.st_uid != os.getuid() or status.st_mode & 0o022 or not os.access(directory, os.W_OK):
        return False
    # A file per grammar, so checkouts of different versions do not rewrite each other's.
    digest = hashlib.sha256(grammar_text().encode()).hexdigest()[:16]
    return str(directory / f"grammar-{digest}.lark-cache")


@functools.cache
def _fast_loop() -> FastLoop:
    return FastLoop(_lark())


@functools.cache
def _recovery() -> Recovery:
    return Recovery(_lark())


def _parse(text: str, start: str, file: str) -> Any:
    """Parse with the fast loop; on input it does not accept, parse again with lark's own
    parser, whose error (and parser state) `syntax_error` explains: the first error only."""
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
                    nfc(match.group().rstrip()), t.Span(number, start, number, match.end() + 1)
                )


def _too_deep(condition: t.Expression, file: str) -> Diagnostic | None:
    """The error for a condition nested too deep, found before anything walks it recursively."""
    stack: list[tuple[t.Expression, int]] = [(condition, 1)]
    children = t.children
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            start = node.span
            span = t.Span(start.line, start.column, start.line, start.column + 1)
            return Diagnostic.at(
                file,
                span,
                f"the rule is nested more than {MAX_DEPTH} levels deep",
                "split it into simpler tiers",
                code=Code.TOO_DEEP,
            )
        below = children(node)
        if below:
            depth += 1
            stack.extend([(child, depth) for child in below])
    return None


def _shallow(tiers: tuple[t.Tier, ...], file: str, errors: list[Diagnostic]) -> tuple[t.Tier, ...]:
    """The tiers whose conditions are not nested too deep; an error for each of the others."""
    kept: list[t.Tier] = []
    for tier in tiers:
        error = _too_deep(tier.condition, file) if tier.condition is not None else None
        if error is None:
            kept.append(tier)
        else:
            errors.append(error)
    return tuple(kept) if len(kept) < len(tiers) else tiers


def _shallow_defines(
    defines: Sequence[t.Define], file: str, errors: list[Diagnostic]
) -> tuple[t.Define, ...]:
    """The definitions not nested too deep; an error for each of the others."""
    kept: list[t.Define] = []
    for define in defines:
        error = _too_deep(define.body, file)
        if error is None:
            kept.append(define)
        else:
            errors.append(error)
    return tuple(kept)


@dataclass(frozen=True)
class Parsed:
    """A rule file as far as it could be read, and every problem found reading it, in file
    order: the syntax errors (a tier with one is left out of `file`, the rest is there to be
    checked) and a warning for a file without tiers."""

    file: t.RuleFile
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")


def parse_recovering(text: str, file: str = "<rules>") -> Parsed:
    """Parse a rule file, reading past syntax errors (`dsl.recovery`) to report them all."""
    if len(text) > MAX_SOURCE_CHARS:
        return Parsed(
            t.RuleFile(file, (), (), bare=True),
            (
                Diagnostic.at(
                    file,
                    t.Span(1, 1, 1, 2),
                    f"the rule text is longer than {MAX_SOURCE_CHARS:,} characters",
                    "split it into several files",
                    code=Code.TOO_LONG,
                ),
            ),
        )
    errors: list[Diagnostic] = []
    try:
        parsed = _fast_loop().parse(text, "start")
    except (Failed, RuleError):
        # Text with an error: lark's parser, which explains errors, reads it to the end.
        parsed, errors = _recovery().parse(text, file, lambda e: syntax_error(e, text, file))
    everything: tuple[t.Define | t.Scheme | t.Tier, ...] = parsed or ()
    defines = tuple(
        _shallow_defines([x for x in everything if isinstance(x, t.Define)], file, errors)
    )
    items = [x for x in everything if not isinstance(x, t.Define)]
    comments = tuple(_comments(text))
    if items and isinstance(items[0], t.Scheme):
        schemes = tuple(
            replace(
                x,
                file=file,
                tiers=_shallow(x.tiers, file, errors),
                defines=_shallow_defines(x.defines, file, errors),
                shared=defines,
            )
            for x in cast(list[t.Scheme], items)
        )
        rule_file = t.RuleFile(file, schemes, comments, bare=False, defines=defines)
    else:
        tiers = _shallow(tuple(cast(list[t.Tier], items)), file, errors)
        span = tiers[0].span.cover(tiers[-1].span) if tiers else t.Span(1, 1, 1, 1)
        scheme = t.Scheme(None, None, tiers, span, None, file, shared=defines) if tiers else None
        rule_file = t.RuleFile(
            file, (scheme,) if scheme else (), comments, bare=True, defines=defines
        )
    if not errors and not rule_file.schemes:
        errors.append(
            Diagnostic.at(
                file,
                t.Span(1, 1, 1, 1),
                "the file has no tiers",
                "write `tier NAME when CONDITION` lines, or `scheme KEY { ... }` blocks of them",
                severity="warning",
                code=Code.EMPTY_FILE,
            )
        )
    return Parsed(rule_file, tuple(sorted(errors, key=position)))


def parse_file(text: str, file: str = "<rules>") -> t.RuleFile:
    """Parse a rule file; raises `RuleError` with every syntax error when there is any."""
    parsed = parse_recovering(text, file)
    if parsed.errors:
        raise RuleError(parsed.errors)
    return parsed.file


def parse_rules(text: str, file: str = "<rules>") -> list[t.Scheme]:
    """The schemes of a rule file; a bare list of `tier` lines is one scheme without a key."""
    return list(parse_file(text, file).schemes)


def parse_condition(text: str, file: str = "<condition>") -> t.Expression:
    """A bare condition such as `monetary > 1000 and region = "east"`."""
    if len(text) > MAX_SOURCE_CHARS:
        raise RuleError(
            [
                Diagnostic.at(
                    file,
                    t.Span(1, 1, 1, 2),
                    f"the condition is longer than {MAX_SOURCE_CHARS:,} characters",
                    code=Code.TOO_LONG,
                )
            ]
        )
    parsed = cast(t.Expression, _parse(text, "condition", file))
    error = _too_deep(parsed, file)
    if error is not None:
        raise RuleError([error])
    return parsed
