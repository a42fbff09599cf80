"""The tier rule language: parse, check, compile to SQL, evaluate in process, explain.

Pipeline: `parser` (lark grammar -> `tree`) -> `checker` (catalog names and types -> `checked`)
-> `compiler` (SQLAlchemy Core) / `evaluator` (one customer, in process) / `explain` /
`formatter`; `lints` warns about valid rules that cannot do what was meant. `catalog` defines
every metric once; `errors` has the one error type. The parser's parts: `grammar` (grammar.lark
and the one list of keywords), `transformer` (lark's reductions to tree nodes), `parser_fast`
(a fast loop over lark's tables), `syntax_errors` (lark's errors in plain words).

Each kind of node is a member of a union type (`tree.Condition`, `checked.Operand`, ...);
every walk dispatches on it (`match`, or `isinstance` in the hot walks: see `dsl.tree`) and
ends in `assert_never`, so mypy lists each walk to update when a kind is added.
`tree.children` and `checked.children` are the generic traversals.
This package does not depend on `service`. SQLAlchemy is imported only when SQL is built.
"""

from typing import TYPE_CHECKING

from dsl.catalog import CATALOG, Metric, MetricRef, Type, Value
from dsl.checked import CheckedScheme, CheckedTier
from dsl.checker import (
    CheckResult,
    check,
    check_condition,
    check_files,
    check_text,
    evaluation_order,
)
from dsl.errors import Diagnostic, RuleError, render, render_all
from dsl.evaluator import (
    CustomerFacts,
    Event,
    Order,
    Prediction,
    compute_metric_values,
    evaluate,
    evaluate_condition,
    is_population,
)
from dsl.explain import ClauseTrace, Explanation, TierTrace, explain
from dsl.formatter import format_file, format_text
from dsl.parser import parse_condition, parse_file, parse_rules

if TYPE_CHECKING:
    from dsl.compiler import Sources, compile_condition, compile_scheme, metric_values_select

_COMPILER = ("Sources", "compile_condition", "compile_scheme", "metric_values_select")


def __getattr__(name: str) -> object:
    """The compiler's names, imported on first use: it needs SQLAlchemy, which checking and
    formatting rules do without (see `catalog._OnFirstUse`)."""
    if name in _COMPILER:
        from dsl import compiler

        return getattr(compiler, name)
    raise AttributeError(f"module 'dsl' has no attribute {name!r}")


__all__ = [
    "CATALOG",
    "CheckResult",
    "CheckedScheme",
    "CheckedTier",
    "ClauseTrace",
    "CustomerFacts",
    "Diagnostic",
    "Event",
    "Explanation",
    "Metric",
    "MetricRef",
    "Order",
    "Prediction",
    "RuleError",
    "Sources",
    "TierTrace",
    "Type",
    "Value",
    "check",
    "check_condition",
    "check_files",
    "check_text",
    "compile_condition",
    "compile_scheme",
    "compute_metric_values",
    "evaluate",
    "evaluate_condition",
    "evaluation_order",
    "explain",
    "format_file",
    "format_text",
    "is_population",
    "metric_values_select",
    "parse_condition",
    "parse_file",
    "parse_rules",
    "render",
    "render_all",
]
