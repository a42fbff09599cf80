"""The grammar of the rule language (`grammar.lark`) and its reserved words, listed once here.

`grammar.lark` leaves the keyword pattern of its NAME and TIER_NAME terminals as `@KEYWORDS@`;
`grammar_text` fills it in from `KEYWORDS`, which the syntax-error wording also reads. A test
checks that `KEYWORDS` holds exactly the words of the grammar's literals and units.
"""

from __future__ import annotations

import re
from pathlib import Path

# Every word of the grammar: its literals (`tier`, `when`, ...) and the units, singular and
# plural. None of them can be a metric or unquoted tier name.
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

GRAMMAR_FILE = Path(__file__).with_name("grammar.lark")
_PLACEHOLDER = "@KEYWORDS@"


def grammar_text() -> str:
    """The lark grammar, with the keyword pattern made from `KEYWORDS`.

    Raises RuntimeError when grammar.lark has no placeholder to fill.
    """
    text = GRAMMAR_FILE.read_text(encoding="utf-8")
    if _PLACEHOLDER not in text:
        raise RuntimeError(f"{GRAMMAR_FILE} has no {_PLACEHOLDER} to fill in")
    return text.replace(_PLACEHOLDER, "|".join(re.escape(word) for word in sorted(KEYWORDS)))
