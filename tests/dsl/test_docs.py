"""docs/rules.md: its metric and code sections match the catalog and `dsl.codes`, its reserved
words the grammar's, every code the checker raises is documented, and every example checks."""

from __future__ import annotations

import re

from dsl import docs
from dsl.checker import check_files
from dsl.errors import RuleError
from dsl.grammar import KEYWORDS
from tests.dsl.golden_inputs import SEEDS, mutated_texts


def test_metric_section_is_current() -> None:
    text = docs.DOC.read_text(encoding="utf-8")
    assert docs.render(text) == text, "docs/rules.md is stale: run `python -m dsl.docs`"


def test_every_metric_is_documented() -> None:
    text = docs.DOC.read_text(encoding="utf-8")
    for name in ("frequency", "percentile", "attributes.KEY", "in tier SCHEME.TIER"):
        assert f"| `{name}` |" in text


def test_examples_check_without_errors() -> None:
    text = docs.DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```rules\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 8
    for n, block in enumerate(blocks):
        result = check_files({f"example{n}.rules": block}, known_tiers={"value": ["VIP"]})
        assert not result.warnings, (block, result.warnings)


def test_reserved_words_are_the_keywords() -> None:
    text = docs.DOC.read_text(encoding="utf-8")
    section = text.split("### Reserved words", 1)[1].split("###", 1)[0]
    [listed] = re.findall(r"`([^`]*)`", section, flags=re.S)
    assert set(listed.split()) == KEYWORDS


def _codes(source: str, published_unknown: str | None = None) -> set[str]:
    try:
        found = check_files({"x.rules": source}, published_unknown=published_unknown).warnings
    except RuleError as error:
        found = error.diagnostics
    return {d.code.value for d in found}


def test_every_code_raised_is_documented() -> None:
    """Every code the golden files, the fuzzed inputs and the examples of `CODE_EXAMPLES`
    raise is in the table of docs/rules.md, and every code in the table is raised by one of
    them (so the table lists no code that cannot happen)."""
    text = docs.DOC.read_text(encoding="utf-8")
    begin, end = docs.markers("codes")
    table = text.split(begin, 1)[1].split(end, 1)[0]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M))
    raised = {"unreadable-file"}  # by the command line: tests/cli/test_rules.py
    for source in [*SEEDS, *mutated_texts(2_000)]:
        raised |= _codes(source)
    for code, source in CODE_EXAMPLES.items():
        found = _codes(source, "no database" if code == "unchecked-reference" else None)
        assert code in found, (code, found)
        raised |= found
    assert raised <= documented, raised - documented
    assert documented <= raised, documented - raised


# An input that raises each code, for those the fuzzed inputs may not reach.
CODE_EXAMPLES = {
    "unterminated-text": 'tier A when region = "north',
    "invalid-text": 'tier A when region = "a\\qb"',
    "invalid-date": "tier A when registered_at > 2026-02-30",
    "empty-tier-name": 'tier "" otherwise',
    "empty-list": "tier A when region in []",
    "number-too-long": "tier A when monetary > 1234567890123456789012345678901",
    "too-deep": "tier A when " + "(" * 41 + "frequency > 1" + ")" * 41,
    "too-long": "tier A otherwise\n" * 40_000,
    "bad-argument": 'tier A when recency(event "login") > 3',
    "missing-argument": "tier A when count(90 days) > 2",
    "invalid-window": "tier A when frequency(1.5 days) > 1",
    "invalid-keep": "tier A when frequency > 1 keep 90",
    "not-ordered": 'tier A when region < "m"',
    "no-metric": "tier A when 1 < 2",
    "unknown-tier": "scheme a {\n tier X otherwise\n}\nscheme b {\n tier Y when in tier a.Z\n}",
    "unknown-scheme": "scheme b {\n tier Y when in tier b2.Z\n}\n",
    "self-reference": "scheme a {\n tier X when in tier a.X\n}",
    "dependency-cycle": (
        "scheme a {\n tier X when in tier b.Y\n}\nscheme b {\n tier Y when in tier a.X\n}"
    ),
    "duplicate-scheme": "scheme a {\n}\nscheme a {\n}",
    "unchecked-reference": "tier A when in tier elsewhere.B",
    "duplicate-tier": "tier A when frequency > 1\ntier A otherwise",
    "after-otherwise": "tier A otherwise\ntier B when frequency > 1",
    "shadowed-tier": "tier A when frequency > 1\ntier B when frequency > 2",
    "never-true": "tier A when frequency > 5 and frequency < 3",
    "empty-file": "# nothing yet\n",
    "not-a-condition": "tier A when monetary",
    "not-a-value": "tier A when (frequency > 1) * 2 > 1",
    "duplicate-definition": "define a = 1\ndefine a = 2\ntier A when monetary > a",
    "definition-cycle": "define a = b + 1\ndefine b = a * 2\ntier A when monetary > a",
}
