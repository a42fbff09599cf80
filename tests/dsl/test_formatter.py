"""The formatter: one layout, idempotent, comments kept, meaning unchanged."""

from __future__ import annotations

from hypothesis import given, settings
from sqlalchemy.dialects import postgresql

from dsl.checker import check_text
from dsl.compiler import compile_scheme
from dsl.formatter import format_text
from tests.dsl.strategies import KNOWN_TIERS, schemes
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
