"""The parser: the tree and spans it builds, Unicode names, comments, bare conditions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dsl import tree as t
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
