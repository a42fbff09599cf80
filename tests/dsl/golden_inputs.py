"""The golden rule files, as seeds for mutation fuzzing, and the one mutation fuzzer."""

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

SEEDS = [
    p.read_text(encoding="utf-8")
    for p in sorted(Path(__file__).with_name("golden").glob("*.rules"))
]

# Pieces of rule text, valid and not, that the fuzzer inserts and strings together: keywords,
# operators, brackets, metrics with arguments, literals (a bad date, bad escapes), comments,
# every kind of whitespace, and characters the language has no use for.
PIECES = [
    "tier",
    "when",
    "otherwise",
    "scheme",
    "scheme s",
    "and",
    "or",
    "not",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "=",
    "!=",
    "<",
    "<=",
    ">=",
    "between",
    "in",
    "contains",
    "starts with",
    "is null",
    "monetary",
    "frequency(30 days)",
    'count(event "x", 9 days)',
    "percentile(",
    "percentile(monetary(12 months))",
    "region",
    "attributes.a",
    "in tier a.B",
    "5000",
    "123",
    "-1.5",
    "2026-01-01",
    "2026-13-01",
    '"text"',
    '"a\\"b"',
    '"\\q"',
    "30 days",
    "true",
    "T1",
    "高价值",
    "# c\n",
    "#",
    "\n",
    "\r\n",
    "\t",
    "\f",
    " ",
    "  ",
    '"',
    "\\",
    "\x00",
    "'",
    ";",
    "--",
]


def mutated_texts(count: int, seeds: Sequence[str] = SEEDS) -> Iterator[str]:
    """`count` texts, the same on every run: every other one a seed with one to four random
    edits (a character deleted, a piece inserted, a character from TAB to U+2FFF inserted), the
    others up to 25 pieces strung together, with spaces between them or without."""
    rng = random.Random(20261126)
    for n in range(count):
        if n % 2:
            yield rng.choice(["", " "]).join(rng.choice(PIECES) for _ in range(rng.randint(0, 25)))
            continue
        chars = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(chars) + 1)
            action = rng.randrange(3)
            if action == 0 and chars:
                del chars[min(where, len(chars) - 1)]
            elif action == 1:
                chars[where:where] = rng.choice(PIECES)
            else:
                chars[where:where] = chr(rng.randrange(0x09, 0x3000))
        yield "".join(chars)
