"""Recovery from syntax errors, so one run reports every error of a file, not only the first.

After an error, lark's parser starts again at the next line whose first word is one of
`grammar.RECOVERY_WORDS` (`tier`, `scheme`, `}`): what was read of the broken tier (or scheme
heading) is dropped from the parser's stack until the stack takes that word, and the lexer
moves there. Tiers and schemes read whole are never dropped. When a new `scheme` (or the end
of the file) comes inside an unclosed block, the block is closed there, so its good tiers stay.
An error raised while building a node (a bad date, an empty list) is recovered from the same
way. The result is the file's tree without the broken tiers, and a diagnostic per error.

Only the slow path runs this: `dsl.parser` tries the fast loop first, and text that parses
never comes here.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dsl import tree as t
from dsl.errors import Diagnostic, RuleError
from dsl.grammar import RECOVERY_WORDS, word_character

Explain = Callable[[UnexpectedInput], Diagnostic]

_END = "$END"


class _Lines:
    """Offsets of line starts, to turn an offset into a line and column and back."""

    def __init__(self, text: str) -> None:
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def offset(self, line: int, column: int) -> int:
        return self.starts[min(line, len(self.starts)) - 1] + column - 1


class Recovery:
    """Recovering parses with one lark parser (`lark` must be LALR with a transformer)."""

    def __init__(self, lark: Lark) -> None:
        self.lark = lark
        names = {term.pattern.value: term.name for term in lark.terminals}
        # The terminal each recovery word is lexed as (`tier` -> TIER, `}` -> RBRACE).
        self.terminals = {word: names[word] for word in RECOVERY_WORDS}
        word = word_character()
        alternatives = "|".join(
            re.escape(w) + (f"(?!{word})" if w[-1].isalnum() else "") for w in RECOVERY_WORDS
        )
        # A recovery word as the first thing on a line.
        self.points = re.compile(rf"^[ \t\f\r]*({alternatives})", re.MULTILINE)

    def parse(self, text: str, file: str, explain: Explain) -> tuple[Any, list[Diagnostic]]:
        """The value lark's parser gives `text` from rule `start`, read past every syntax error
        (None when nothing could be made of it), and the errors, as `explain` words them."""
        interactive: Any = self.lark.parse_interactive(text, start="start")
        state = interactive.parser_state
        line_counter = interactive.lexer_thread.state.line_ctr
        lines = _Lines(text)
        errors: list[Diagnostic] = []
        resumed = -1
        while True:
            try:
                return interactive.resume_parse(), errors
            except UnexpectedInput as error:
                errors.append(explain(error))
                at = _offset(error, text)
            except RuleError as error:  # raised while building a node
                errors.extend(replace(d, file=file) for d in error.diagnostics)
                first = error.diagnostics[0]
                at = lines.offset(first.line, first.column)
            # Always forward: a second error before the last restart starts after it.
            at = max(at, resumed + 1)
            resumed = self._restart(state, text, lines, at)
            if resumed < 0:
                return None, errors
            line_counter.char_pos = resumed
            line_counter.line = lines.line_of(resumed)
            line_counter.line_start_pos = lines.starts[line_counter.line - 1]
            line_counter.column = resumed - line_counter.line_start_pos + 1

    def _restart(self, state: Any, text: str, lines: _Lines, at: int) -> int:
        """Make the parser's stack take the first recovery point at or after offset `at`
        that it can take; returns that point's offset (the end of the text for the end), or
        -1 when not even the end can be taken."""
        while True:
            found = self.points.search(text, text.rfind("\n", 0, at) + 1)
            while found is not None and found.start(1) < at:
                found = self.points.search(text, found.end())
            if found is None:
                offset, terminal = len(text), _END
            else:
                offset, terminal = found.start(1), self.terminals[found.group(1)]
            if _make_room(state, terminal, _token("RBRACE", "}", offset, lines)):
                return offset
            if terminal == _END:
                return -1
            at = offset + 1


def _offset(error: UnexpectedInput, text: str) -> int:
    if isinstance(error, UnexpectedToken):
        return len(text) if error.token.type == _END else int(error.token.start_pos or 0)
    assert isinstance(error, UnexpectedCharacters)
    return int(error.pos_in_stream or 0)


def _token(kind: str, value: str, offset: int, lines: _Lines) -> Token:
    line = lines.line_of(offset)
    column = offset - lines.starts[line - 1] + 1
    return Token(kind, value, offset, line, column, line, column, offset)


def _kept(value: Any, terminal: str) -> bool:
    """Whether recovery must not drop `value` from the parser's stack to take `terminal`."""
    if isinstance(value, t.Tier | t.Scheme | t.Define):
        return True
    if isinstance(value, Tree):  # lark's list of tiers or schemes, or of a condition's items
        return any(isinstance(child, t.Tier | t.Scheme | t.Define) for child in value.children)
    if isinstance(value, Token):
        # An open scheme block is closed, not dropped; a scheme's heading is dropped only for
        # the next scheme or the end (its tiers would otherwise read as a bare list).
        if value.type == "SCHEME":
            return terminal not in ("SCHEME", _END)
        return value.type == "LBRACE"
    return False


def trial_copy(state: Any) -> Any:
    """A copy of lark's parser state to try tokens on, leaving `state` as it is.

    lark's reduction of a list (`tier*`) appends to the list's Tree in place, so the copy gets
    Trees of its own; the nodes of `dsl.tree` are immutable and are shared.
    """
    trial = state.copy(deepcopy_values=False)
    trial.value_stack = [
        Tree(v.data, list(v.children)) if isinstance(v, Tree) else v for v in trial.value_stack
    ]
    return trial


def _takes(state: Any, drop: int, terminal: str) -> bool:
    """Whether the parser would take `terminal` after dropping `drop` values from its stack."""
    trial = trial_copy(state)
    if drop:
        del trial.state_stack[-drop:]
        del trial.value_stack[-drop:]
    try:
        trial.feed_token(Token(terminal, ""), is_end=terminal == _END)
    except (UnexpectedInput, RuleError):
        return False
    return True


def _make_room(state: Any, terminal: str, close: Token) -> bool:
    """Drop what was read of a broken tier (or heading) until the parser takes `terminal`;
    False, with the stack unchanged, when it cannot without dropping a whole tier or scheme.
    For a new scheme or the end, an open block is closed with `close` first."""
    values = state.value_stack
    # A broken tier (or definition) is dropped whole, from its first word: what was read of it
    # may well be complete (`tier A when region` before a broken `= "..."`), but is not what
    # was written.
    drop = next(
        (
            len(values) - i
            for i in range(len(values) - 1, -1, -1)
            if isinstance(values[i], Token) and values[i].type in ("TIER", "DEFINE")
        ),
        0,
    )
    while not _takes(state, drop, terminal):
        if drop == len(values) or _kept(values[-1 - drop], terminal):
            break
        drop += 1
    else:
        _drop(state, drop)
        return True
    in_block = any(isinstance(v, Token) and v.type == "LBRACE" for v in values)
    if terminal in ("SCHEME", _END) and in_block:
        for inner in range(drop + 1):
            if _takes(state, inner, "RBRACE"):
                _drop(state, inner)
                state.feed_token(close)
                return _make_room(state, terminal, close)
    return False


def _drop(state: Any, count: int) -> None:
    if count:
        del state.state_stack[-count:]
        del state.value_stack[-count:]
