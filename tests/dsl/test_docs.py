"""docs/rules.md: its metric section matches the catalog, its reserved words the grammar's, and
every example checks."""

from __future__ import annotations

import re

from dsl import docs
from dsl.checker import check_files
from dsl.grammar import KEYWORDS


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
