"""The stable code of every diagnostic, listed once: tools match on codes, people read messages.

A code never changes meaning once published (messages may be reworded). docs/rules.md shows
this list as a table (`dsl.docs` generates it; a test fails when it is stale), and a test checks
that every code the checker raises is in it. A new check adds one line here.
"""

from __future__ import annotations

import enum


class Code(enum.StrEnum):
    """A diagnostic's code (its value, such as `unknown-metric`) and what it means."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> Code:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    # Reading the text (dsl.parser).
    SYNTAX_ERROR = (
        "syntax-error",
        "The text does not follow the grammar: something is missing, misplaced or extra. The "
        "message says what was expected there and what was found.",
    )
    UNEXPECTED_CHARACTER = (
        "unexpected-character",
        "A character the language has no use for, such as `&`, `'` or `;`.",
    )
    UNTERMINATED_TEXT = (
        "unterminated-text",
        'Text in double quotes whose closing `"` is missing on its line.',
    )
    INVALID_TEXT = (
        "invalid-text",
        'Text with an unknown escape (only `\\"`, `\\\\`, `\\n`, `\\t` exist) or a NUL character.',
    )
    INVALID_DATE = "invalid-date", "A date that does not exist, such as `2026-02-30`."
    EMPTY_TIER_NAME = "empty-tier-name", 'A tier named `""`.'
    EMPTY_LIST = "empty-list", "`in []`: a list needs at least one value."
    NUMBER_TOO_LONG = "number-too-long", "A number with more than 30 digits."
    TOO_DEEP = "too-deep", "A condition nested more than 40 levels deep."
    TOO_LONG = "too-long", "Rule text longer than 500,000 characters."
    # Names, arguments and types (dsl.checker).
    UNKNOWN_METRIC = "unknown-metric", "A name that is not a metric of the catalog."
    BAD_ARGUMENT = (
        "bad-argument",
        "An argument the metric does not take, one given twice, or a metric to rank that is "
        "not numeric.",
    )
    MISSING_ARGUMENT = (
        "missing-argument",
        'A metric without an argument it needs, such as `count` without `event "..."`.',
    )
    INVALID_WINDOW = (
        "invalid-window",
        "A window that is not a whole number of days from 1 day to 100 years, or a horizon that "
        "a prediction metric is not predicted for (`clv(60 days)`).",
    )
    INVALID_KEEP = (
        "invalid-keep",
        "A `keep` that is not a whole number of days from 1 day to 100 years (`keep 90 days`), "
        "or a `keep` on an `otherwise` tier, which has no condition to stop holding.",
    )
    TYPE_MISMATCH = (
        "type-mismatch",
        "Two sides that cannot be compared: text with a number, a count with a duration, two "
        "attributes, `contains` without text; or arithmetic on values it does not apply to "
        "(text, a date plus a date, days times days).",
    )
    NOT_ORDERED = (
        "not-ordered",
        "`<`, `>` or `between` on values without an order (text, true/false).",
    )
    NO_METRIC = (
        "no-metric",
        "A comparison of constants (`1 < 2`), or `between`, `in`, `contains`, `is null` without "
        "a metric on the left.",
    )
    UNKNOWN_SCHEME = (
        "unknown-scheme",
        "`in tier S.T` where no scheme `S` is in the files checked or published.",
    )
    UNKNOWN_TIER = "unknown-tier", "`in tier S.T` where scheme `S` has no tier `T`."
    SELF_REFERENCE = "self-reference", "A scheme whose tiers read its own tiers."
    DEPENDENCY_CYCLE = (
        "dependency-cycle",
        "Schemes that read each other's tiers in a cycle (`a` reads `b`, `b` reads `a`).",
    )
    DUPLICATE_SCHEME = "duplicate-scheme", "Two schemes with the same key."
    UNCHECKED_REFERENCE = (
        "unchecked-reference",
        "A note: `in tier S.T` names a scheme that is not in the files checked, and no database "
        "was found to look up the published ones, so the reference was not checked.",
    )
    NOT_A_CONDITION = (
        "not-a-condition",
        "A value where a condition belongs: `tier A when monetary` (compare it with something), "
        "or a defined value used as a condition.",
    )
    NOT_A_VALUE = (
        "not-a-value",
        "A condition where a value belongs: in arithmetic, or a defined condition compared.",
    )
    DUPLICATE_DEFINITION = (
        "duplicate-definition",
        "Two `define`s of one name in the same file or scheme, or a definition named like a "
        "metric of the catalog.",
    )
    DEFINITION_CYCLE = (
        "definition-cycle",
        "Definitions that use each other in a cycle (`a` uses `b`, `b` uses `a`).",
    )
    DUPLICATE_TIER = (
        "duplicate-tier",
        "Two tiers of one scheme with the same name (a warning for versions published before "
        "it became an error).",
    )
    # Valid rules that cannot do what was meant (dsl.lints): warnings.
    AFTER_OTHERWISE = (
        "after-otherwise",
        "A tier after `otherwise`: `otherwise` takes everyone left, so it never gets anyone.",
    )
    SHADOWED_TIER = (
        "shadowed-tier",
        "A tier whose every customer is already taken by earlier tiers.",
    )
    NEVER_TRUE = (
        "never-true",
        "A condition that can never be true (`frequency > 5 and frequency < 3`).",
    )
    EMPTY_FILE = "empty-file", "A file with no tiers: nothing to check or publish."
    # Files (the command line).
    UNREADABLE_FILE = "unreadable-file", "A file that cannot be read, or is not UTF-8 text."
