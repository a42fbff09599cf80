"""A fast LALR loop over lark's own tables, for text that parses; `dsl.parser` hands anything
else to lark's parser, which explains it.

Tied to lark's internals (lark is pinned to 1.3 in pyproject.toml for that reason);
tests/dsl/test_parser_fast.py compares it with lark's own parser on valid and invalid text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lark import Lark, Token
from lark import lexer as lark_lexer
from lark.parse_tree_builder import ExpandSingleChild
from lark.parsers.lalr_analysis import Shift

# lark's own step of building a state's scanner: its terminals (string terminals a regular
# one also matches folded into that one) and the token callbacks that tell them apart again.
_create_unless: Callable[..., tuple[list[Any], dict[str, Any]]] = lark_lexer._create_unless

_Match = Callable[[str, int, int], "re.Match[str] | None"]
_Scanner = tuple[_Match, frozenset[str], dict[str, Any]]


class Failed(Exception):
    """The fast loop met input it does not accept; lark's own parser explains it."""


class FastLoop:
    """lark's contextual lexer and LALR loop for input that parses, in one tight loop.

    It runs lark's own tables: the same per-state scanners (so the same regular expressions,
    in the same order), the same parse table and the same reduction callbacks (so the same
    tree), and makes the same tokens. What it leaves out is what makes lark's loop slow in
    pure Python: a generator and a method call per token, a `LineCounter` per ignored token.
    It does not explain errors: on any input it does not accept it stops, and `dsl.parser` runs
    lark's parser, which does. Callbacks run in the same order in both, so an error raised by
    a callback (a bad date, say) is the same either way.
    """

    def __init__(self, lark: Lark) -> None:
        frontend: Any = lark.parser
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
        self.lexers = _Scanners(lark)
        self.skip = self.lexers.skip

    def parse(self, text: str, start: str) -> Any:
        """What lark's parser with our transformer returns for `text` from rule `start`.

        Raises `Failed` on input lark's parser would reject, and lets a callback's error (a
        `RuleError`) through, as lark's parser does.
        """
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
                        raise Failed
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
                        raise Failed  # lark asserts that the end is never shifted
                    state_stack.append(target)
                    value_stack.append(
                        token if type_ not in shift_callbacks else shift_callbacks[type_](token)
                    )
                    break
                reduction = reductions[state].get(type_)
                if reduction is None:
                    raise Failed
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


class _Scanners(dict[int, _Scanner]):
    """Per parser state, its scanner: the match, the terminals that may span lines and lark's
    token callbacks. Each is made when the loop first reaches its state: compiling all of them
    (about 150 states) took most of the time a new process spends parsing a small file, which
    reaches a few dozen; tests/dsl/test_parser_fast.py makes every one."""

    def __init__(self, lark: Lark) -> None:
        super().__init__()
        self._contextual: Any = lark.parser.lexer
        # The ignored terminals (whitespace, comments) are skipped by a pattern made of theirs,
        # put in front of each state's scanner so that one match skips them and reads the token
        # after them. The same as lark's scanners matching and dropping them one by one,
        # because no other terminal of the grammar starts with whitespace or `#`: where one of
        # them matches, lark's scanner matches nothing else. (Possessive: never given back.)
        self._ignored = frozenset(lark.lexer_conf.ignore)
        flags = lark.lexer_conf.g_regex_flags
        self.skip_pattern = "(?:{})*+".format(
            "|".join(lark.get_terminal(name).pattern.to_regexp() for name in sorted(self._ignored))
        )
        self.skip = re.compile(self.skip_pattern, flags).match

    @property
    def states(self) -> list[int]:
        """Every state that has a scanner."""
        return list(self._contextual.lexers)

    def __missing__(self, state: int) -> _Scanner:
        # lark's scanner is one alternation of the state's terminals in lark's order (past 100
        # terminals it splits it, which this grammar is far from), with the callbacks of its
        # `_build_scanner`. Made here as lark makes it, without compiling lark's own copy of
        # the alternation (this loop compiles its own, the skip pattern in front): that copy
        # was half the regular-expression compiling of a new process.
        lexer = self._contextual.lexers[state]
        terminals, callbacks = _create_unless(
            lexer.terminals, lexer.g_regex_flags, lexer.re, lexer.use_bytes
        )
        if (
            len(terminals) >= 100
            or lexer.user_callbacks
            or lexer.use_bytes
            or lexer.ignore_types != self._ignored
            or self._ignored & set(callbacks)
        ):
            raise RuntimeError("the fast loop expects one scanner pattern, same ignores")
        pattern = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals)
        match = re.compile(f"{self.skip_pattern}(?:{pattern})", lexer.g_regex_flags).match
        scanner = self[state] = (match, lexer.newline_types, callbacks)
        return scanner
