"""The parser: the tree and spans it builds, Unicode names, comments, bare conditions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dsl import tree as t
from dsl.checker import check_text
from dsl.errors import RuleError
from dsl.parser import parse_condition, parse_file, parse_rules


def test_the_example_line() -> None:
    [scheme] = parse_rules("tier VIP when monetary > 5000 and frequency >= 2")
    assert scheme.key is None
    [tier] = scheme.tiers
    assert tier.name == "VIP" and isinstance(tier.condition, t.And)
    spend, orders = tier.condition.items
    assert isinstance(spend, t.Compare) and isinstance(orders, t.Compare)
    assert (spend.op, spend.right) == (">", t.Number(Decimal(5000), t.Span(1, 26, 1, 30)))
    assert spend.span == t.Span(1, 15, 1, 30)
    assert (orders.op, orders.span) == (">=", t.Span(1, 35, 1, 49))


def test_unicode_names_comments_and_precedence() -> None:
    source = (
        '# 分层\nscheme 价值 "客户价值" {\n'
        "  tier 普通客户 when a > 1 or b > 2 and not c > 3  # 注释\n"
        '  tier "with space" otherwise\n}\n'
    )
    rule_file = parse_file(source, "x.rules")
    [scheme] = rule_file.schemes
    assert (scheme.key, scheme.title, scheme.file) == ("价值", "客户价值", "x.rules")
    first, second = scheme.tiers
    assert (first.name, first.quoted, second.name, second.quoted) == (
        "普通客户",
        False,
        "with space",
        True,
    )
    assert isinstance(first.condition, t.Or)
    assert isinstance(first.condition.items[1], t.And)
    assert [c.text for c in rule_file.comments] == ["# 分层", "# 注释"]


def test_strings_escapes_and_literals() -> None:
    condition = parse_condition(
        'attributes.x in ["a\\"b", "c\\\\d", 2026-01-31, true, -1.50, 6 months]'
    )
    assert isinstance(condition, t.InList)
    values = [getattr(item, "value", None) for item in condition.items]
    assert values[:2] == ['a"b', "c\\d"]
    assert str(values[4]) == "-1.50"
    duration = condition.items[5]
    assert isinstance(duration, t.Duration) and (duration.amount, duration.unit) == (6, "month")


def test_keywords_are_reserved_where_they_stand() -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules("tier VIP when monetary > and frequency >= 2")
    [d] = caught.value.diagnostics
    assert (d.line, d.column, d.end_column) == (1, 26, 29)
    assert "COMP_OP" not in d.message and "and" in d.message


# Case indic-tier-names: `rules check` said "unexpected character" at the vowel sign.
INDIC = "scheme h {\n  tier सोना when monetary > 100\n  tier Other otherwise\n}\n"


def test_letters_with_combining_marks_are_letters() -> None:
    result = check_text(INDIC)
    assert result.warnings == ()
    assert result.schemes[0].tier_names == ("सोना", "Other")
    text = (
        "scheme ग्राहक {\n"
        '  tier ลูกค้าประจำ when region = "ภาคเหนือ" and attributes.श्रेणी = "स्वर्ण"\n'
        "  tier क्\u200dष when in tier ग्राहक.ลูกค้าประจำ\n"  # a joiner inside a word
        "}\n"
    )
    [scheme] = parse_rules(text)
    assert scheme.key == "ग्राहक"
    assert [tier.name for tier in scheme.tiers] == ["ลูกค้าประจำ", "क्\u200dष"]


def test_names_and_text_are_read_in_nfc() -> None:
    """A decomposed accent (e + U+0301) and a composed one (é) are the same name and text;
    positions stay those of the text as written."""
    decomposed = (
        "scheme cafe\u0301 {\n"
        '  tier Cafe\u0301 when attributes.cafe\u0301 = "Mu\u0308nchen" # cafe\u0301\n'
        "}\n"
        "scheme other {\n"
        "  tier Other when in tier caf\u00e9.Caf\u00e9 and region < 1\n"
        "}\n"
    )
    rule_file = parse_file(decomposed)
    scheme, _ = rule_file.schemes
    [first] = scheme.tiers
    assert (scheme.key, first.name) == ("caf\u00e9", "Caf\u00e9")
    assert first.condition == t.Compare(
        t.Attribute("caf\u00e9", t.Span(2, 19, 2, 35)),
        "=",
        t.String("M\u00fcnchen", t.Span(2, 38, 2, 48)),
        t.Span(2, 19, 2, 48),
        t.Span(2, 36, 2, 37),
    )
    assert rule_file.comments[0].text == "# caf\u00e9"
    # The reference in composed form finds the scheme and tier written decomposed; the error
    # on the same line is found at its column in the text as written.
    with pytest.raises(RuleError) as caught:
        check_text(decomposed)
    [error] = caught.value.diagnostics
    assert (error.code, error.line, error.column) == ("type-mismatch", 5, 41)
