"""The grammar of the rule language (`grammar.lark`), its reserved words and what a word is,
each said once here.

`grammar.lark` leaves the keyword pattern of its NAME and TIER_NAME terminals as `@KEYWORDS@`
and the class of a word's characters as `@WORD@`; `grammar_text` fills them in from `KEYWORDS`
(which the syntax-error wording also reads) and `word_character`. A test checks that
`KEYWORDS` holds exactly the words of the grammar's literals and units.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path

# Every word of the grammar: its literals (`tier`, `when`, ...) and the units, singular and
# plural. None of them can be a metric or unquoted tier name.
KEYWORDS = frozenset(
    (
        "scheme",
        "define",
        "ago",
        "tier",
        "when",
        "otherwise",
        "keep",
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
        "currency",
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

# Where the parser starts again after a syntax error: a line whose first word is one of these
# (see dsl.recovery), so one run reports the errors of every tier, not only the first.
RECOVERY_WORDS = ("tier", "scheme", "define", "}")

GRAMMAR_FILE = Path(__file__).with_name("grammar.lark")

# Where combining marks are: every code point of Unicode's M categories lies in these ranges
# (from U+0300 to the end of the supplementary multilingual plane, and the variation
# selectors of plane 14); tests/dsl/test_grammar.py checks it against the whole code space.
MARK_RANGES = (range(0x300, 0x20000), range(0xE0100, 0xE01F0))
# Zero-width joiner and non-joiner: written inside words of Indic scripts and Persian.
_JOINERS = "\u200c\u200d"


@functools.cache
def word_character() -> str:
    """A regular-expression class of the characters that continue a word (a name, a tier
    name, a keyword): Python's `\\w` (letters, digits and `_` of every script), the combining
    marks (Unicode categories Mn, Mc, Me: Devanagari and Thai vowel signs, decomposed accents),
    and the zero-width (non-)joiners. Computed once (about 50 ms)."""
    marks: list[str] = []
    for block in MARK_RANGES:
        start = end = -1
        for cp in block:
            if unicodedata.category(chr(cp))[0] == "M":
                if cp != end + 1:
                    if start >= 0:
                        marks.append(_span(start, end))
                    start = cp
                end = cp
        if start >= 0:
            marks.append(_span(start, end))
    return f"[\\w{''.join(marks)}{_JOINERS}]"


def _span(start: int, end: int) -> str:
    return f"\\U{start:08x}" if start == end else f"\\U{start:08x}-\\U{end:08x}"


@functools.cache
def _bare_word() -> re.Pattern[str]:
    return re.compile(f"\\w{word_character()}*")


def is_word(text: str) -> bool:
    """Whether `text` is one word as the grammar reads it (a name may still be a keyword)."""
    return _bare_word().fullmatch(text) is not None


def grammar_text() -> str:
    """The lark grammar, with the keyword pattern made from `KEYWORDS` and the word class from
    `word_character`.

    Raises RuntimeError when grammar.lark lacks a placeholder to fill.
    """
    text = GRAMMAR_FILE.read_text(encoding="utf-8")
    for placeholder, value in (
        ("@KEYWORDS@", "|".join(re.escape(word) for word in sorted(KEYWORDS))),
        ("@WORD@", word_character()),
    ):
        if placeholder not in text:
            raise RuntimeError(f"{GRAMMAR_FILE} has no {placeholder} to fill in")
        text = text.replace(placeholder, value)
    return text
