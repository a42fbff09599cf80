"""`CheckedScheme.refs`, collected by the checker as it builds the conditions, is what walking
the checked conditions with `checked.condition_refs` gives: every reference, in first-use order."""

from __future__ import annotations

from hypothesis import given, settings

from benchmarks.bench_dsl import scheme_text
from dsl import checked as c
from dsl.checker import check_files
from dsl.errors import RuleError
from tests.dsl.golden_inputs import SEEDS
from tests.dsl.strategies import schemes

_KNOWN = {"value": ["VIP", "Normal"], "a": ["B"]}


def _same_refs(text: str) -> None:
    try:
        result = check_files({"f.rules": text}, known_tiers=_KNOWN)
    except RuleError:
        return
    for scheme in result.schemes:
        walked: dict[object, None] = {}
        for tier in scheme.tiers:
            if tier.condition is not None:
                walked.update(dict.fromkeys(c.condition_refs(tier.condition)))
        assert scheme.refs == tuple(walked), text


def test_benchmark_golden_and_mixed_schemes() -> None:
    for text in [scheme_text(), *SEEDS]:
        _same_refs(text)
    _same_refs(
        'tier A when attributes.plan = "gold" and region != "x" or 5 < monetary\n'
        "tier B when percentile(monetary(365 days)) between 10 and frequency\n"
        'tier C when region contains "n" and attributes.n is not null and in tier value.VIP\n'
        "tier D when not (nps in [1, 2] or tenure >= 3 weeks) and attributes.n > 2\n"
        "tier E otherwise\n"
    )


@settings(max_examples=300, deadline=None)
@given(schemes())
def test_generated_schemes(text: str) -> None:
    _same_refs(text)
