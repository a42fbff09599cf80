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
This package does not depend on `service`. Its names are imported on first use (a command
loads only the stages it runs); SQLAlchemy only when SQL is built.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from dsl.compiler import Sources, compile_condition, compile_scheme, metric_values_select
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
    from dsl.explain import ClauseTrace, Explanation, TierTrace
    from dsl.formatter import format_file, format_text
    from dsl.parser import parse_condition, parse_file, parse_rules

# Which module defines each name of the package. They are imported on first use, so that a
# command loads only the stages it runs: checking a file needs neither the in-process
# evaluator, explain nor the formatter, and only the compiler needs SQLAlchemy (see
# `catalog._OnFirstUse`). tests/cli/test_startup.py holds what `rules check` leaves out.
_MODULES = {
    "catalog": ("CATALOG", "Metric", "MetricRef", "Type", "Value"),
    "checked": ("CheckedScheme", "CheckedTier"),
    "checker": (
        "CheckResult",
        "check",
        "check_condition",
        "check_files",
        "check_text",
        "evaluation_order",
    ),
    "compiler": ("Sources", "compile_condition", "compile_scheme", "metric_values_select"),
    "errors": ("Diagnostic", "RuleError", "render", "render_all"),
    "evaluator": (
        "CustomerFacts",
        "Event",
        "Order",
        "Prediction",
        "compute_metric_values",
        "evaluate",
        "evaluate_condition",
        "is_population",
    ),
    # Not `explain` itself, the function: a package attribute of that name is the module
    # `dsl.explain` once anything has imported it (import it from `dsl.explain`).
    "explain": ("ClauseTrace", "Explanation", "TierTrace"),
    "formatter": ("format_file", "format_text"),
    "parser": ("parse_condition", "parse_file", "parse_rules"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    """``dsl.NAME``, imported from its module on first use (then kept in the package)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dsl' has no attribute {name!r}")
    value = getattr(import_module(f"dsl.{module}"), name)
    globals()[name] = value
    return value


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
