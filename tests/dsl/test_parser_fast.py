"""The parser's fast loop (`dsl.parser_fast.FastLoop`) against lark's own parser, and both
against the recovering parser (`dsl.recovery`) that reads past errors.

Text that parses must give the same tree (spans included) through all of them; text that does
not must make the fast loop hand over (so lark explains the error) or raise the same
`RuleError`, and the recovering parser's first error must be the one lark stops at.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark import UnexpectedInput

from benchmarks.bench_dsl import scheme_text
from dsl.checker import check_files
from dsl.errors import Diagnostic, RuleError, position
from dsl.parser import _fast_loop, _lark, _recovery, parse_recovering
from dsl.parser_fast import Failed
from dsl.syntax_errors import syntax_error
from tests.dsl.golden_inputs import SEEDS, mutated_texts
from tests.dsl.strategies import conditions, rule_texts, schemes

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


def _recovering(text: str) -> tuple[object, list[Diagnostic]]:
    return _recovery().parse(text, "f", lambda e: syntax_error(e, text, "f"))


def _agree_with_recovery(text: str) -> None:
    """The fast loop and lark's recovering parser give the same tree for text that parses;
    for text that does not, the recovering parser's first error is the one lark's parser
    stops at, and every error comes in file order."""
    fast = _run(lambda: _fast_loop().parse(text, "start"))
    tree, errors = _recovering(text)
    if fast[0] == "tree":
        assert (tree, errors) == (fast[1], []), text
        return
    assert errors, text
    first = _run(lambda: _lark().parse(text, start="start"))
    if first[0] == "rule error":
        assert errors[0] == replace(first[1][0], file="f"), text  # type: ignore[index]
    else:
        assert first[0] == "syntax error", text
        try:
            _lark().parse(text, start="start")
        except UnexpectedInput as error:
            assert errors[0] == syntax_error(error, text, "f"), text
    assert [position(d) for d in errors] == sorted(position(d) for d in errors), text


def test_recovery_agrees_with_both_parsers() -> None:
    for text in [*_HANDWRITTEN, *SEEDS, scheme_text(), *mutated_texts(3_000, SEEDS)]:
        _agree_with_recovery(text)


@settings(max_examples=300, deadline=None)
@given(rule_texts())
def test_recovery_agrees_on_generated_files(text: str) -> None:
    _agree_with_recovery(text)


def test_every_error_of_a_file_is_reported() -> None:
    """One run shows the misspelt metric on line 2 and the broken argument on line 4, and the
    tiers around them are read (the good ones checked, so nothing else is reported)."""
    text = (
        "scheme value {\n"
        "  tier VIP when monetory > 5000\n"
        "  tier Loyal when frequency >= 12\n"
        "  tier Active when frequency(30 dayz) >= 1\n"
        "  tier Normal otherwise\n"
        "}\n"
    )
    parsed = parse_recovering(text, "v.rules")
    assert [tier.name for tier in parsed.file.schemes[0].tiers] == ["VIP", "Loyal", "Normal"]
    with pytest.raises(RuleError) as caught:
        check_files({"v.rules": text})
    found = [(d.line, d.column, d.code) for d in caught.value.diagnostics]
    assert found == [(2, 17, "unknown-metric"), (4, 33, "syntax-error")]


def test_every_state_has_a_scanner_the_fast_loop_can_use() -> None:
    # Scanners are made as the loop reaches their states; make all of them, so that a grammar
    # change breaking the loop's assumptions fails here, not on some rule author's file.
    # (A state whose scanner breaks them raises RuntimeError.)
    # Each is lark's own scanner (the same alternation, in the same order) behind the skip
    # pattern, with lark's callbacks.
    scanners = _fast_loop().lexers
    contextual: Any = _lark().parser.lexer
    for state in scanners.states:
        match, newlines, callbacks = scanners[state]
        lark = contextual.lexers[state]
        assert (
            match.__self__.pattern == f"{scanners.skip_pattern}(?:{lark.scanner._mres[0].pattern})"
        )
        assert callbacks.keys() == lark.callback.keys()
        assert newlines == lark.newline_types
    assert len(scanners) == len(scanners.states) > 100
