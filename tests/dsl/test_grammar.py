"""The reserved words: `dsl.grammar.KEYWORDS`, the one list of them, is exactly the words the
grammar is written with, and they, and only they, cannot be names."""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import get_args

import pytest
from lark.lexer import PatternStr

from dsl import tree as t
from dsl.grammar import KEYWORDS, MARK_RANGES, mark_spans, stored_spans, word_character
from dsl.parser import _lark


def _terminal(name: str) -> re.Pattern[str]:
    [terminal] = [x for x in _lark().terminals if x.name == name]
    return re.compile(terminal.pattern.to_regexp())


def test_keywords_are_the_words_of_the_grammar() -> None:
    literals = {
        x.pattern.value
        for x in _lark().terminals
        if isinstance(x.pattern, PatternStr) and x.pattern.value.isalpha()
    }
    units = {word + plural for word in get_args(t.Unit) for plural in ("", "s")}
    assert all(_terminal("UNIT").fullmatch(unit) for unit in units)
    assert literals | units == KEYWORDS


def test_names_exclude_exactly_the_keywords() -> None:
    for terminal in ("NAME", "TIER_NAME"):
        pattern = _terminal(terminal)
        for word in KEYWORDS:
            assert not pattern.fullmatch(word), (terminal, word)
            for longer in (word + "s2", word + "_x", "x" + word):
                assert pattern.fullmatch(longer), (terminal, longer)


def test_mark_ranges_hold_every_combining_mark() -> None:
    """`word_character` looks for marks only in `MARK_RANGES` (to build fast): none is
    elsewhere in the whole code space, and every mark continues a word."""
    inside = {cp for block in MARK_RANGES for cp in block}
    word = re.compile(word_character())
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp))[0] == "M":
            assert cp in inside, hex(cp)
            assert word.fullmatch(chr(cp)), hex(cp)


def test_the_stored_marks_are_the_computed_ones() -> None:
    """`word_character` reads the marks of this Python's Unicode from a stored table when it
    has one (to start fast); they must be what `mark_spans` finds."""
    stored = stored_spans(unicodedata.unidata_version)
    if stored is None:
        pytest.skip(
            f"this Python's Unicode {unicodedata.unidata_version} has no stored table of marks: "
            "they are computed (the test above checks them)"
        )
    assert stored == mark_spans()
