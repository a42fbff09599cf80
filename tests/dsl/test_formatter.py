"""The formatter: one layout, idempotent, comments kept, meaning unchanged."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given, settings
from sqlalchemy.dialects import postgresql

from dsl import tree as t
from dsl.checker import check_text
from dsl.compiler import compile_scheme
from dsl.formatter import format_text
from dsl.parser import parse_file
from tests.dsl.strategies import KNOWN_TIERS, rule_texts, schemes
from tests.dsl.support import AS_OF, sources

MESSY = """# Value tiers
scheme value "Customer value" {   # header
  tier VIP when monetary(365 days)>5000 and (frequency(30 days) >= 2) # big
  # Chinese name
      tier "高价值客户" when monetary between 2000 and 5000
  tier Complainer when count(event "complaint", 90 days) >= 2 or (nps <= 6 or not in tier value.VIP)
  tier Odd when not not (attributes.plan = "g\\"o") and ((a_b > 1 or region is null))
  tier Normal     otherwise
  # end
}   # after
# eof
"""

EXPECTED = """# Value tiers
scheme value "Customer value" {  # header
  tier VIP        when monetary(365 days) > 5000 and frequency(30 days) >= 2  # big
  # Chinese name
  tier 高价值客户 when monetary between 2000 and 5000
  tier Complainer when count(event "complaint", 90 days) >= 2 or nps <= 6 or not in tier value.VIP
  tier Odd        when not not (attributes.plan = "g\\"o") and (a_b > 1 or region is null)
  tier Normal     otherwise
  # end
}  # after
# eof
"""


def test_layout() -> None:
    assert format_text(MESSY) == EXPECTED
    assert format_text(EXPECTED) == EXPECTED


def _sql(text: str) -> str:
    scheme = check_text(text, known_tiers=KNOWN_TIERS).schemes[0]
    return str(compile_scheme(scheme, sources("t"), AS_OF).compile(dialect=postgresql.dialect()))


@settings(max_examples=150, deadline=None)
@given(schemes())
def test_idempotent_and_meaning_preserving(text: str) -> None:
    formatted = format_text(text)
    assert format_text(formatted) == formatted
    assert _sql(formatted) == _sql(text)


def _shape(node: object) -> object:
    """A parsed file as what it means to the parser: no positions, no parentheses, nested
    `and`s and `or`s as one, tier names without how they were written (quoted or bare), and
    numbers as their exact digits."""
    if isinstance(node, t.Group):
        return _shape(node.inner)
    if isinstance(node, t.And | t.Or):
        items: list[object] = []
        for item in node.items:
            while isinstance(item, t.Group):
                item = item.inner
            if type(item) is type(node):
                items.extend(_shape(item)[1])  # type: ignore[index]
            else:
                items.append(_shape(item))
        return type(node).__name__, tuple(items)
    if isinstance(node, Decimal):
        return node.as_tuple()
    if dataclasses.is_dataclass(node):
        return type(node).__name__, tuple(
            _shape(getattr(node, f.name))
            for f in dataclasses.fields(node)
            if f.name not in ("span", "op_span", "list_span", "name_span", "key_span")
            and f.name not in ("scheme_span", "tier_span", "quoted", "file")
        )
    if isinstance(node, tuple):
        return tuple(_shape(x) for x in node)
    return node


def _round_trips(text: str) -> None:
    before = parse_file(text)
    formatted = format_text(text)
    assert _shape(parse_file(formatted)) == _shape(before), formatted
    assert format_text(formatted) == formatted


@settings(max_examples=400, deadline=None)
@given(rule_texts())
def test_formatted_text_parses_to_the_same_tree(text: str) -> None:
    """fmt never changes what a file says: every file that parses, formatted, parses to the
    same tree (numbers with their exact digits, any names and text), and fmt is idempotent."""
    _round_trips(text)


# Case fmt-tiny-literal: `fmt` wrote `0.0000001` as `1E-7`, which does not parse.
TINY = "scheme tiny {\n  tier Some when monetary > 0.0000001\n  tier None otherwise\n}\n"


def test_tiny_literals_round_trip() -> None:
    assert format_text(TINY) == TINY
    for number in ("0.0000001", "-0.000000000000000000000000001", "1.500", "-0", "007.10"):
        for form in (f"monetary > {number}", f"frequency({number} days) > 1"):
            _round_trips(f"tier A when {form}\n")
    _round_trips("tier A when monetary > 123456789012345678901234567890\n")


def test_keep_is_laid_out_after_the_condition() -> None:
    text = "tier Gold when monetary(365 days)>=10000   keep  3 months # loyal\ntier B otherwise\n"
    assert format_text(text) == (
        "tier Gold when monetary(365 days) >= 10000 keep 3 months  # loyal\ntier B    otherwise\n"
    )
