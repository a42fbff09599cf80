"""The parser's fast loop (`dsl.parser_fast.FastLoop`) against lark's own parser.

Text that parses must give the same tree (spans included) through both; text that does not must
make the fast loop hand over (so lark explains the error) or raise the same `RuleError`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lark import UnexpectedInput

from benchmarks.bench_dsl import scheme_text
from dsl.errors import RuleError
from dsl.parser import _fast_loop, _lark
from dsl.parser_fast import Failed
from tests.dsl.golden_inputs import SEEDS, mutated_texts
from tests.dsl.strategies import conditions, schemes

_HANDWRITTEN = [
    "",
    "\n\n",
    "# only a comment",
    "# a comment\n\n   # another\n",
    "tier A otherwise",
    "tier 123 otherwise",
    "tier 2024 when monetary > 1\n",
    'tier "a # not a comment" when region = "#x" # a comment\n',
    "tier A when monetary > 1 # trailing comment without a newline",
    "\ttier\tA\twhen\tmonetary\t>\t1\r\n\ttier B otherwise\r\n",
    "\f tier A when\n\n\n   monetary\n>\n1\n",
    'scheme value "Value" {\n  tier VIP when monetary(365 days) > 5000\n  tier N otherwise\n}',
    "scheme a {}\nscheme b { tier X when in tier a.Y }\n",
    'tier 普通客户 when region in ["北方", "west",] and nps is not null\n',
    'tier A when attributes.plan = "gold" and not (tenure < 30 days or recency > 4 weeks)\n',
    "tier A when first_purchase >= 2026-01-01 and monetary not between 1 and 2\n",
    'tier A when region not contains "x" and region starts with "n"\n',
    "tier A when monetary > 1 and",
    "tier A when monetary >",
    "tier A when monetary > 1 }",
    "tier when otherwise",
    "tier A when monetary > 2026-02-30",
    "tier A when monetary > 1 && frequency > 2",
]


def _run(parse: Any) -> tuple[str, object]:
    try:
        return "tree", parse()
    except Failed:
        return "handed over", None
    except RuleError as error:
        return "rule error", error.diagnostics
    except UnexpectedInput as error:
        return "syntax error", type(error).__name__


def _same(text: str, start: str = "start") -> None:
    fast = _run(lambda: _fast_loop().parse(text, start))
    lark = _run(lambda: _lark().parse(text, start=start))
    if fast[0] == "handed over":
        assert lark[0] in ("syntax error", "rule error"), text
    else:
        assert fast == lark, text


def test_handwritten_texts() -> None:
    for text in _HANDWRITTEN:
        _same(text)


def test_golden_inputs_and_the_benchmark_scheme() -> None:
    for text in [*SEEDS, scheme_text()]:
        _same(text)


def test_mutated_and_random_texts() -> None:
    for text in mutated_texts(6_000, [*SEEDS, *_HANDWRITTEN]):
        _same(text)
        _same(text, "condition")


@settings(max_examples=300, deadline=None)
@given(schemes())
def test_generated_schemes(text: str) -> None:
    _same(text)


@settings(max_examples=300, deadline=None)
@given(conditions())
def test_generated_conditions(text: str) -> None:
    _same(text, "condition")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_text(text: str) -> None:
    _same(text)
    _same(text, "condition")


def test_valid_text_takes_the_fast_loop() -> None:
    # Not only the same answer: the fast loop must not hand valid text over to lark.
    for text in [scheme_text(), *(t for t in _HANDWRITTEN[:17])]:
        assert _run(lambda: _fast_loop().parse(text, "start"))[0] == "tree", text  # noqa: B023
