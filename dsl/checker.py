"""Names, arguments and types of a parsed scheme, checked against the catalog.

`check` turns `dsl.tree` schemes into `dsl.checked` schemes, collecting every error it finds
(each with a position) before raising one `RuleError`, and returns lint warnings alongside.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import assert_never

from dsl import checked as c
from dsl import tree as t
from dsl.catalog import (
    CATALOG,
    MAX_WINDOW_DAYS,
    MetricRef,
    Param,
    Source,
    Type,
    number_text,
    quote_name,
    window_days,
)
from dsl.codes import Code
from dsl.errors import Diagnostic, RuleError, position
from dsl.lints import lint_scheme

# A tuple: membership tests by identity first, without Enum's Python-level __hash__.
_ORDERED = (Type.NUMBER, Type.DAYS, Type.TIMESTAMP)
_CALLABLE = sorted(name for name in CATALOG if name not in ("attributes", "in tier"))
_CALLABLE_SET = frozenset(_CALLABLE)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")  # text that reads as a number literal
_TYPE_WORDS = {
    Type.NUMBER: "a number",
    Type.DAYS: "a number of days",
    Type.TEXT: "text",
    Type.TIMESTAMP: "a date and time",
    Type.BOOLEAN: "true or false",
    Type.ATTRIBUTE: "an attribute",
}


class _Fail(Exception):
    def __init__(self, span: t.Span, message: str, hint: str | None = None, *, code: Code) -> None:
        super().__init__(message)
        self.span, self.message, self.hint, self.code = span, message, hint, code

    def diagnostic(self, file: str) -> Diagnostic:
        return Diagnostic.at(file, self.span, self.message, self.hint, code=self.code)


class _Silent(Exception):
    """A use of a definition that has an error: reported once, at the definition."""


@dataclass
class _Checked:
    """A checked definition: its body, the references it reads (in first-use order) and the
    definitions it uses, directly or through others."""

    body: c.Condition | c.Operand
    refs: list[MetricRef]
    uses: list[str]


_CONDITIONS = (t.Compare, t.Between, t.InList, t.TextMatch, t.IsNull, t.InTier, t.Not, t.And, t.Or)
_VERBS = {"+": "added to", "-": "subtracted from", "*": "multiplied by", "/": "divided by"}


def _has_metric(node: c.Operand) -> bool:
    if isinstance(node, c.Arith):
        return _has_metric(node.left) or _has_metric(node.right)
    return isinstance(node, c.Ref)


@dataclass(frozen=True)
class CheckResult:
    """The checked schemes, in the order given, and the warnings and notes, in file order."""

    schemes: tuple[c.CheckedScheme, ...]
    warnings: tuple[Diagnostic, ...]


def _noun(node: c.Operand, source: t.Operand) -> str:
    """How an operand is named in an error: a metric with its type, a constant as written."""
    match node:
        case c.Ref() | c.Arith():
            return f"`{c.operand_text(node)}` ({_TYPE_WORDS[node.type]})"
        case c.Const():
            return _written(node, source)
        case _:
            assert_never(node)


def _written(node: c.Const, source: t.Operand) -> str:
    while isinstance(source, t.Group) and not isinstance(source.inner, _CONDITIONS):
        source = source.inner
    match source:
        case t.Duration():
            return f"the duration {number_text(source.amount)} {source.unit}s"
        case t.String():
            return f"the text {_short(source.value)}"
        case t.Date():
            return f"the date {source.value.isoformat()}"
        case t.Number():
            return f"the number {number_text(source.value)}"
        case t.Boolean() | t.Metric() | t.Attribute() | t.Arith() | t.Group():
            return f"`{c.const_text(node)}`"
        case _:
            assert_never(source)


def _mismatch(a: c.Operand, a_src: t.Operand, b: c.Operand, b_src: t.Operand) -> str:
    if isinstance(b, c.Ref | c.Arith) and not isinstance(a, c.Ref | c.Arith):
        a, a_src, b, b_src = b, b_src, a, a_src
    if isinstance(a, c.Ref | c.Arith):
        return (
            f"`{c.operand_text(a)}` is {_TYPE_WORDS[a.type]}, so it cannot be compared with "
            f"{_noun(b, b_src)}"
        )
    return f"{_noun(a, a_src)} cannot be compared with {_noun(b, b_src)}"


def _short(text: str) -> str:
    from dsl.catalog import quote

    return quote(text if len(text) <= 40 else text[:37] + "...")


class _Checker:
    def __init__(
        self,
        file: str,
        tiers_of: Mapping[str, Collection[str]],
        published_unknown: str | None = None,
    ) -> None:
        self.file = file
        self.tiers_of = tiers_of
        self.published_unknown = published_unknown
        # Notes on what could not be checked (references to schemes that could not be read).
        self.notes: list[Diagnostic] = []
        self.depends: dict[str, t.Span] = {}
        # One MetricRef per distinct reference: a scheme names the same few metrics many times.
        self.refs: dict[object, MetricRef] = {}
        # The references of the checked conditions as they are built, in order of appearance
        # (what `checked.condition_refs` finds walking them afterwards).
        self.found: list[MetricRef] = []
        # The definitions in scope (the file's, then the scheme's), as checked (None: with an
        # error, reported at the definition), those being checked (to find cycles), and those
        # the tiers use, with the errors found checking them.
        self.definitions: dict[str, t.Define] = {}
        self.checked: dict[str, _Checked | None] = {}
        self.resolving: list[str] = []
        self.used: dict[str, None] = {}
        self.uses: list[str] = []
        self.definition_errors: list[Diagnostic] = []

    def _found(self, *operands: c.Operand) -> None:
        for operand in operands:
            if isinstance(operand, c.Ref):
                self.found.append(operand.ref)
            elif isinstance(operand, c.Arith):
                self._found(operand.left, operand.right)
            elif not isinstance(operand, c.Const):
                assert_never(operand)

    # Definitions.

    def define(self, define: t.Define) -> None:
        """Check a definition (once), keeping what it reads out of `found`."""
        found, uses = len(self.found), len(self.uses)
        with contextlib.suppress(_Fail, _Silent):
            self.resolve(define.name, define.name_span)
        del self.found[found:]
        del self.uses[uses:]

    def resolve(self, name: str, span: t.Span) -> c.Condition | c.Operand:
        """The checked body of the definition `name`, used at `span`; raises `_Silent` when
        the definition has an error (reported where it is)."""
        if name in self.checked:
            done = self.checked[name]
            if done is None:
                raise _Silent
            self.found.extend(done.refs)
            self.uses.extend(done.uses)
            return done.body
        if name in self.resolving:
            path = [*self.resolving[self.resolving.index(name) :], name]
            raise _Fail(
                span,
                "definitions refer to each other in a cycle: " + " → ".join(path),
                "a definition can use another only if that one does not, directly or through "
                "others, use it",
                code=Code.DEFINITION_CYCLE,
            )
        definition = self.definitions[name]
        self.resolving.append(name)
        found, uses = len(self.found), len(self.uses)
        try:
            body = self.expression(definition.body)
        except _Fail as fail:
            self.checked[name] = None
            self.definition_errors.append(fail.diagnostic(self.file))
            raise _Silent from None
        except _Silent:
            self.checked[name] = None
            raise
        finally:
            self.resolving.pop()
        self.uses.append(name)
        self.checked[name] = _Checked(body, self.found[found:], self.uses[uses:])
        return body

    def defined(self, node: t.Metric) -> c.Condition | c.Operand:
        """A use of a definition by its name."""
        if node.args:
            raise _Fail(
                node.span,
                f"`{node.name}` is a definition; it takes no arguments",
                code=Code.BAD_ARGUMENT,
            )
        return self.resolve(node.name, node.span)

    def expression(self, node: t.Expression) -> c.Condition | c.Operand:
        """A condition or a value, as written (the body of a definition)."""
        while isinstance(node, t.Group):
            node = node.inner
        if isinstance(node, t.Metric) and node.name in self.definitions:
            return self.defined(node)
        if isinstance(node, _CONDITIONS):
            return self.condition(node)
        return self.operand(node)

    # Operands.

    def operand(self, node: t.Operand) -> c.Operand:
        if isinstance(node, t.Metric):
            if node.name in self.definitions:
                value = self.defined(node)
                if not isinstance(value, c.Ref | c.Const | c.Arith):
                    raise _Fail(
                        node.span,
                        f"`{node.name}` is a condition, not a value",
                        "a defined condition is used on its own or with and, or, not: "
                        f"`{node.name} and ...`",
                        code=Code.NOT_A_VALUE,
                    )
                return value
            return self.metric(node)
        elif isinstance(node, t.Arith):
            return self.arith(node)
        elif isinstance(node, t.Group):
            inner = node.inner
            if isinstance(inner, _CONDITIONS):
                raise _Fail(
                    node.span,
                    "a condition cannot be used as a value",
                    "compare values with =, <, > ...; join conditions with and, or",
                    code=Code.NOT_A_VALUE,
                )
            return self.operand(inner)
        elif isinstance(node, t.Number):
            return c.Const(node.value, Type.NUMBER, node.span)
        elif isinstance(node, t.String):
            return c.Const(node.value, Type.TEXT, node.span)
        elif isinstance(node, t.Attribute):
            return c.Ref(MetricRef("attributes", key=node.key), Type.ATTRIBUTE, node.span)
        elif isinstance(node, t.Duration):
            return c.Const(window_days(node.amount, node.unit), Type.DAYS, node.span)
        elif isinstance(node, t.Boolean):
            return c.Const(node.value, Type.BOOLEAN, node.span)
        elif isinstance(node, t.Date):
            moment = dt.datetime.combine(node.value, dt.time(), tzinfo=dt.UTC)
            return c.Const(moment, Type.TIMESTAMP, node.span)
        else:
            assert_never(node)

    def arith(self, node: t.Arith) -> c.Arith:
        left, right = self.operand(node.left), self.operand(node.right)
        left, right = _as_type(left, Type.NUMBER), _as_type(right, Type.NUMBER)
        a, b, op = left.type, right.type, node.op
        result: Type | None = None
        if a is Type.TIMESTAMP and b is Type.TIMESTAMP:
            result = Type.DAYS if op == "-" else None
        elif op in ("+", "-"):
            if a is b and a in (Type.NUMBER, Type.DAYS):
                result = a
            # A bare number next to a day count means days: `recency + 7`.
            elif ((a, b) == (Type.DAYS, Type.NUMBER) and isinstance(right, c.Const)) or (
                (a, b) == (Type.NUMBER, Type.DAYS) and isinstance(left, c.Const)
            ):
                result = Type.DAYS
        elif op == "*":
            if a is Type.NUMBER and b is Type.NUMBER:
                result = Type.NUMBER
            elif {a, b} == {Type.NUMBER, Type.DAYS}:
                result = Type.DAYS
        elif a is Type.DAYS and b is Type.DAYS:
            result = Type.NUMBER
        elif b is Type.NUMBER and a in (Type.NUMBER, Type.DAYS):
            result = a
        if result is None:
            if Type.TEXT in (a, b) or Type.BOOLEAN in (a, b):
                hint = (
                    "arithmetic is between numbers, metrics and durations, not text or true/false"
                )
            elif Type.TIMESTAMP in (a, b):
                hint = "a date minus a date is a number of days; nothing else computes with dates"
            elif Type.DAYS in (a, b) and op in ("+", "-"):
                hint = "days add to days: write the number as a duration, e.g. 30 days"
            elif op == "*":
                hint = "days are multiplied by a number, not by days"
            else:
                hint = "days divide by a number or by days; a number cannot be divided by days"
            raise _Fail(
                node.span,
                f"{_noun(right, node.right)} cannot be {_VERBS[op]} {_noun(left, node.left)}"
                if op in ("+", "-")
                else f"{_noun(left, node.left)} cannot be {_VERBS[op]} {_noun(right, node.right)}",
                hint,
                code=Code.TYPE_MISMATCH,
            )
        return c.Arith(left, op, right, result, node.span)

    def metric(self, node: t.Metric) -> c.Ref:
        entry = CATALOG.get(node.name) if node.name in _CALLABLE_SET else None
        if entry is None and node.name in self.definitions:
            raise _Fail(
                node.span,
                f"`{node.name}` is a definition; only metrics of the catalog go here",
                code=Code.BAD_ARGUMENT,
            )
        if entry is None:
            names = [*_CALLABLE, *self.definitions]
            close = difflib.get_close_matches(node.name.lower(), names, n=1, cutoff=0.6)
            message = f"unknown metric `{node.name}`"
            if close:
                message += f"; did you mean `{close[0]}`?"
            raise _Fail(
                node.name_span,
                message,
                "the metrics are listed in docs/rules.md",
                code=Code.UNKNOWN_METRIC,
            )
        if not node.args and not entry.required:  # the common case: a bare metric name
            bare = self.refs.get(entry.name)
            if bare is None:
                bare = self.refs[entry.name] = MetricRef(entry.name)
            return c.Ref(bare, entry.type, node.span)
        values: dict[Param, object] = {}
        for arg in node.args:
            param, value = self.argument(arg, entry.name)
            if param not in entry.params:
                raise _Fail(
                    arg.span, _no_param(entry.name, param, entry.params), code=Code.BAD_ARGUMENT
                )
            if param in values:
                raise _Fail(
                    arg.span,
                    f"`{entry.name}` is given a {param.value} twice",
                    code=Code.BAD_ARGUMENT,
                )
            values[param] = value
        for param in entry.required:
            if param not in values:
                raise _Fail(
                    node.span,
                    f"`{entry.name}` needs {_NEEDS[param]}",
                    f"for example: {entry.example}",
                    code=Code.MISSING_ARGUMENT,
                )
        window = values.get(Param.WINDOW)
        if entry.horizons and window not in entry.horizons:
            days = ", ".join(str(h) for h in entry.horizons)
            raise _Fail(
                node.span,
                f"`{entry.name}` is predicted for {days} days only, not for {window} days",
                f"for example: {entry.example}",
                code=Code.INVALID_WINDOW,
            )
        of = values.get(Param.METRIC)
        fields = (
            entry.name,
            _int_or_none(values.get(Param.WINDOW)),
            _str_or_none(values.get(Param.CATEGORY)),
            _str_or_none(values.get(Param.CHANNEL)),
            _str_or_none(values.get(Param.EVENT)),
            of if isinstance(of, MetricRef) else None,
            _int_or_none(values.get(Param.AGO)),
            _str_or_none(values.get(Param.CURRENCY)),
        )
        ref = self.refs.get(fields)
        if ref is None:
            ref = self.refs[fields] = MetricRef(
                fields[0],
                window_days=fields[1],
                category=fields[2],
                channel=fields[3],
                event=fields[4],
                of=fields[5],
                ago_days=fields[6],
                currency=fields[7],
            )
        return c.Ref(ref, entry.type, node.span)

    def argument(self, arg: t.Arg, outer: str) -> tuple[Param, object]:
        if isinstance(arg, t.WindowArg):
            days = window_days(arg.duration.amount, arg.duration.unit)
            if days != days.to_integral_value() or not 1 <= days <= MAX_WINDOW_DAYS:
                raise _Fail(
                    arg.span,
                    "a window is a whole number of days from 1 day to 100 years",
                    "for example: frequency(30 days), monetary(12 months)",
                    code=Code.INVALID_WINDOW,
                )
            return Param.WINDOW, int(days)
        elif isinstance(arg, t.AgoArg):
            days = window_days(arg.duration.amount, arg.duration.unit)
            if days != days.to_integral_value() or not 1 <= days <= MAX_WINDOW_DAYS:
                raise _Fail(
                    arg.span,
                    "a time ago is a whole number of days from 1 day to 100 years",
                    "for example: monetary(90 days, 90 days ago)",
                    code=Code.INVALID_WINDOW,
                )
            return Param.AGO, int(days)
        elif isinstance(arg, t.KeywordArg):
            return Param(arg.keyword), arg.value.value
        elif isinstance(arg, t.MetricArg):
            inner = self.metric(arg.metric)
            entry = CATALOG[inner.ref.name]
            if entry.source is Source.POPULATION or inner.type not in (Type.NUMBER, Type.DAYS):
                kind = (
                    "a population score"
                    if entry.source is Source.POPULATION
                    else _TYPE_WORDS[inner.type]
                )
                raise _Fail(
                    arg.span,
                    f"`{outer}` needs a numeric metric; `{inner.ref.text}` is {kind}",
                    code=Code.BAD_ARGUMENT,
                )
            return Param.METRIC, inner.ref
        else:
            assert_never(arg)

    # Typing.

    def unify(
        self, a: c.Operand, a_src: t.Operand, b: c.Operand, b_src: t.Operand, span: t.Span
    ) -> tuple[c.Operand, c.Operand, Type]:
        """The common type of two operands; attributes take the type of the other side."""
        if a.type is Type.ATTRIBUTE and b.type is Type.ATTRIBUTE:
            raise _Fail(
                span,
                "two attributes cannot be compared with each other",
                'compare an attribute with a value, e.g. attributes.plan = "gold"',
                code=Code.TYPE_MISMATCH,
            )
        if a.type is Type.ATTRIBUTE or b.type is Type.ATTRIBUTE:
            other = b if a.type is Type.ATTRIBUTE else a
            target = Type.NUMBER if other.type is Type.DAYS else other.type
            if target not in (Type.NUMBER, Type.TEXT, Type.BOOLEAN):
                raise _Fail(
                    span,
                    f"attributes are compared with text, numbers or true/false, "
                    f"not with {_TYPE_WORDS[other.type]}",
                    code=Code.TYPE_MISMATCH,
                )
            a, b = _as_type(a, target), _as_type(b, target)
            return a, b, target
        if a.type is b.type:
            return a, b, a.type
        # A bare number next to a day count means days: `recency > 90`.
        for x, y in ((a, b), (b, a)):
            if x.type is Type.DAYS and y.type is Type.NUMBER and isinstance(y, c.Const):
                return a, b, Type.DAYS
        hint = None
        quoted = next((x for x in (a, b) if isinstance(x, c.Const) and x.type is Type.TEXT), None)
        if quoted is not None and _NUMBER.fullmatch(str(quoted.value).strip()):
            hint = f"numbers are written without quotes: {str(quoted.value).strip()}"
        elif Type.TEXT in (a.type, b.type):
            hint = 'text values are written in double quotes, e.g. region = "east"'
        elif Type.DAYS in (a.type, b.type):
            hint = "durations compare with day counts such as recency or tenure"
        raise _Fail(span, _mismatch(a, a_src, b, b_src), hint, code=Code.TYPE_MISMATCH)

    def condition(self, node: t.Expression) -> c.Condition:
        # isinstance rather than match: a hot walk (HOT_PATH_DISPATCH in dsl.tree); the most common
        # kinds first.
        if isinstance(node, t.Compare):
            left, right = self.operand(node.left), self.operand(node.right)
            if not (isinstance(left, c.Ref) or isinstance(right, c.Ref)) and not (
                _has_metric(left) or _has_metric(right)
            ):
                raise _Fail(
                    node.span,
                    "this comparison has no metric in it",
                    "compare a metric with a value, e.g. frequency >= 2",
                    code=Code.NO_METRIC,
                )
            left, right, type_ = self.unify(left, node.left, right, node.right, node.span)
            if node.op not in ("=", "!=") and type_ not in _ORDERED:
                raise _Fail(
                    node.op_span,
                    f"{_TYPE_WORDS[type_]} can only be compared with = or !=",
                    "for text there are also in [...], contains, starts with",
                    code=Code.NOT_ORDERED,
                )
            self._found(left, right)
            return c.Compare(left, node.op, right, node.span)
        elif isinstance(node, t.Group):
            return self.condition(node.inner)
        elif isinstance(node, t.And):
            return c.And(tuple(self.condition(x) for x in node.items), node.span)
        elif isinstance(node, t.Or):
            return c.Or(tuple(self.condition(x) for x in node.items), node.span)
        elif isinstance(node, t.Not):
            return c.Not(self.condition(node.operand), node.span)
        elif isinstance(node, t.Between):
            operand: c.Operand = self.ref(node.operand, "between")
            low, high = self.operand(node.low), self.operand(node.high)
            operand, low, type_ = self.unify(operand, node.operand, low, node.low, node.span)
            operand, high, type_ = self.unify(operand, node.operand, high, node.high, node.span)
            if type_ not in _ORDERED:
                raise _Fail(
                    node.span,
                    f"`between` needs numbers, days or dates, not {_TYPE_WORDS[type_]}",
                    code=Code.NOT_ORDERED,
                )
            self._found(operand, low, high)
            return c.Between(operand, low, high, node.negated, node.span)
        elif isinstance(node, t.InList):
            operand = self.ref(node.operand, "in")
            items: list[c.Const] = []
            for item in node.items:
                const = self.operand(item)
                operand, const, _ = self.unify(operand, node.operand, const, item, item.span)
                assert isinstance(const, c.Const)
                items.append(const)
            self._found(operand)
            return c.InList(operand, tuple(items), node.negated, node.span)
        elif isinstance(node, t.TextMatch):
            operand = self.ref(node.operand, node.op)
            value = self.operand(node.value)
            if value.type is not Type.TEXT:
                raise _Fail(
                    node.value.span,
                    f"`{node.op}` needs text in double quotes",
                    code=Code.TYPE_MISMATCH,
                )
            operand, value, _ = self.unify(operand, node.operand, value, node.value, node.span)
            self._found(operand, value)
            return c.TextMatch(operand, node.op, value, node.negated, node.span)
        elif isinstance(node, t.IsNull):
            is_null = c.IsNull(self.ref(node.operand, "is null"), node.negated, node.span)
            self._found(is_null.operand)
            return is_null
        elif isinstance(node, t.InTier):
            return self.member(node)
        elif isinstance(node, t.Metric) and node.name in self.definitions:
            defined = self.defined(node)
            if isinstance(defined, c.Ref | c.Const | c.Arith):
                raise _Fail(
                    node.span,
                    f"`{node.name}` is a value ({_TYPE_WORDS[defined.type]}), not a condition",
                    f"compare it with something, e.g. {node.name} > 100",
                    code=Code.NOT_A_CONDITION,
                )
            return defined
        elif isinstance(
            node,
            (t.Metric, t.Attribute, t.Arith, t.Number, t.String, t.Date, t.Duration, t.Boolean),
        ):
            if isinstance(node, t.Boolean):
                text = "true" if node.value else "false"
                raise _Fail(
                    node.span,
                    f"`{text}` alone is not a condition",
                    "compare a metric with a value, e.g. frequency >= 2",
                    code=Code.NOT_A_CONDITION,
                )
            value = self.operand(node)
            raise _Fail(
                node.span,
                f"{_noun(value, node)} is a value, not a condition",
                f"compare it with something, e.g. {c.operand_text(value)} > 100"
                if value.type in _ORDERED
                else 'compare it with something, e.g. region = "east"',
                code=Code.NOT_A_CONDITION,
            )
        else:
            assert_never(node)

    def ref(self, node: t.Operand, what: str) -> c.Ref | c.Arith:
        result = self.operand(node)
        if isinstance(result, c.Arith) and _has_metric(result):
            return result
        if not isinstance(result, c.Ref):
            raise _Fail(
                node.span,
                f"`{what}` needs a metric on its left",
                "for example: monetary between 2000 and 5000",
                code=Code.NO_METRIC,
            )
        return result

    def member(self, node: t.InTier) -> c.Member:
        if node.scheme not in self.tiers_of and self.published_unknown is not None:
            self.notes.append(
                Diagnostic.at(
                    self.file,
                    node.span,
                    f"scheme `{node.scheme}` is not in the files checked and the published "
                    "schemes could not be read, so "
                    f"`in tier {node.scheme}.{quote_name(node.tier)}` was not checked",
                    self.published_unknown,
                    severity="note",
                    code=Code.UNCHECKED_REFERENCE,
                )
            )
        elif node.scheme not in self.tiers_of:
            close = difflib.get_close_matches(node.scheme, list(self.tiers_of), n=1)
            message = f"unknown scheme `{node.scheme}`"
            if close:
                message += f"; did you mean `{close[0]}`?"
            raise _Fail(node.scheme_span, message, code=Code.UNKNOWN_SCHEME)
        tiers = list(self.tiers_of.get(node.scheme, (node.tier,)))
        if node.tier not in tiers:
            close = difflib.get_close_matches(node.tier, tiers, n=1)
            message = f"scheme `{node.scheme}` has no tier `{node.tier}`"
            if close:
                message += f"; did you mean `{close[0]}`?"
            raise _Fail(node.tier_span, message, code=Code.UNKNOWN_TIER)
        self.depends.setdefault(node.scheme, node.scheme_span)
        member = c.Member(MetricRef("in tier", scheme=node.scheme, tier=node.tier), node.span)
        self.found.append(member.ref)
        return member


_NEEDS = {
    Param.WINDOW: "a horizon, like 365 days",
    Param.EVENT: 'an event type, like event "complaint"',
    Param.METRIC: "a metric to rank, like percentile(monetary)",
}


def _no_param(name: str, param: Param, accepted: Sequence[Param]) -> str:
    if not accepted:
        return f"`{name}` takes no arguments"
    words = ", ".join(_PARAM_WORDS[p] for p in accepted)
    return f"`{name}` does not take {_PARAM_WORDS[param]}; it takes {words}"


_PARAM_WORDS = {
    Param.WINDOW: "a window",
    Param.CATEGORY: "a category",
    Param.CHANNEL: "a channel",
    Param.CURRENCY: "a currency",
    Param.EVENT: "an event type",
    Param.METRIC: "a metric",
    Param.AGO: "a time ago (`90 days ago`)",
}


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _as_type(node: c.Operand, target: Type) -> c.Operand:
    if isinstance(node, c.Ref) and node.type is Type.ATTRIBUTE:
        return c.Ref(replace(node.ref, as_type=target), target, node.span)
    return node


def _check_scheme(
    scheme: t.Scheme,
    tiers_of: Mapping[str, Collection[str]],
    errors: list[Diagnostic],
    late_errors: list[Diagnostic],
    notes: list[Diagnostic],
    published_unknown: str | None,
) -> tuple[c.CheckedScheme, dict[str, t.Span]]:
    checker = _Checker(scheme.file, tiers_of, published_unknown)
    for define in (*scheme.shared, *scheme.defines):
        earlier = checker.definitions.get(define.name)
        if earlier is not None or define.name in CATALOG:
            where = f" (line {earlier.span.line})" if earlier is not None else " of the catalog"
            kind = "definition" if earlier is not None else "metric"
            errors.append(
                Diagnostic.at(
                    scheme.file,
                    define.name_span,
                    f"`{define.name}` is already a {kind}{where}",
                    "give the definition another name",
                    code=Code.DUPLICATE_DEFINITION,
                )
            )
            continue
        checker.definitions[define.name] = define
    for define in checker.definitions.values():
        checker.define(define)
    errors.extend(checker.definition_errors)
    tiers: list[c.CheckedTier] = []
    named: dict[str, t.Tier] = {}
    for index, tier in enumerate(scheme.tiers):
        first = named.setdefault(tier.name, tier)
        if first is not tier:
            # Memberships, reports and strategies know a tier by its name: two of one name
            # would be counted as one tier listed twice.
            late_errors.append(
                Diagnostic.at(
                    scheme.file,
                    tier.name_span,
                    f"another tier is already named `{tier.name}` (line {first.span.line})",
                    "tier names must differ within a scheme; rename one, or join their "
                    "conditions with `or`",
                    code=Code.DUPLICATE_TIER,
                )
            )
        found, uses = len(checker.found), len(checker.uses)
        try:
            condition = checker.condition(tier.condition) if tier.condition else None
        except _Fail as fail:
            errors.append(fail.diagnostic(scheme.file))
            condition = None
            del checker.found[found:]  # a tier in error reads nothing
            del checker.uses[uses:]
        except _Silent:  # a definition it uses has an error, reported there
            condition = None
            del checker.found[found:]
            del checker.uses[uses:]
        keep_days = None
        if tier.keep is not None:
            try:
                keep_days = _keep_days(tier)
            except _Fail as fail:
                errors.append(fail.diagnostic(scheme.file))
        tiers.append(c.CheckedTier(tier.name, index, condition, tier.span, keep_days))
    # Every reference of the tiers' conditions, in first-use order: the references the checker
    # found while building them, in the order `c.condition_refs` of each tier would list them.
    refs = dict.fromkeys(checker.found)
    if scheme.key is not None and scheme.key in checker.depends:
        errors.append(
            Diagnostic.at(
                scheme.file,
                checker.depends[scheme.key],
                f"scheme `{scheme.key}` cannot depend on its own tiers",
                code=Code.SELF_REFERENCE,
            )
        )
    notes.extend(checker.notes)
    used = set(checker.uses)
    definitions = []
    for name, define in checker.definitions.items():
        done = checker.checked.get(name)
        if name in used and done is not None:
            definitions.append(c.Definition(name, done.body, define.span))
    result = c.CheckedScheme(
        scheme.key,
        scheme.title,
        tuple(tiers),
        tuple(refs),
        frozenset(checker.depends),
        scheme.file,
        scheme.span,
        tuple(definitions),
    )
    return result, checker.depends


def _keep_days(tier: t.Tier) -> int:
    """The days of a tier's `keep`; `_Fail` (invalid-keep) for one that is not a duration of
    whole days in range, or on an `otherwise` tier."""
    assert tier.keep is not None
    keep, hold = tier.keep, tier.keep.hold
    if tier.condition is None:
        raise _Fail(
            keep.span,
            "an `otherwise` tier cannot keep its customers: it has no condition to stop holding",
            "put `keep` after the condition of a `when` tier",
            code=Code.INVALID_KEEP,
        )
    if isinstance(hold, t.Number):
        raise _Fail(
            hold.span,
            "`keep` takes a duration: a number with its unit",
            f"for example: keep {hold.value} days",
            code=Code.INVALID_KEEP,
        )
    if not isinstance(hold, t.Duration):
        raise _Fail(
            hold.span,
            "`keep` takes a duration written out, such as `90 days` or `3 months`",
            code=Code.INVALID_KEEP,
        )
    days = window_days(hold.amount, hold.unit)
    if days != days.to_integral_value() or not 1 <= days <= MAX_WINDOW_DAYS:
        raise _Fail(
            hold.span,
            "a keep is a whole number of days from 1 day to 100 years",
            "for example: keep 90 days, keep 3 months",
            code=Code.INVALID_KEEP,
        )
    return int(days)


def _cycles(
    graph: Mapping[str, Collection[str]],
    spans: Mapping[str, Mapping[str, t.Span]],
    files: Mapping[str, str],
) -> list[Diagnostic]:
    errors: list[Diagnostic] = []
    reported: set[frozenset[str]] = set()
    for start in spans:
        # Depth-first search from each scheme of these files for a path back to itself.
        stack: list[tuple[str, list[str]]] = [(d, [start, d]) for d in graph.get(start, ())]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            if node == start:
                key = frozenset(path)
                # A scheme reading its own tiers (path of two) is reported on its own.
                if len(path) > 2 and key not in reported:
                    reported.add(key)
                    errors.append(
                        Diagnostic.at(
                            files[start],
                            spans[start][path[1]],
                            "schemes depend on each other in a cycle: " + " → ".join(path),
                            "a scheme can use the tiers of another only if that one does not, "
                            "directly or through others, use its tiers",
                            code=Code.DEPENDENCY_CYCLE,
                        )
                    )
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.extend((d, [*path, d]) for d in graph.get(node, ()))
    return errors


def check(
    schemes: Sequence[t.Scheme],
    *,
    known_tiers: Mapping[str, Collection[str]] | None = None,
    known_dependencies: Mapping[str, Collection[str]] | None = None,
    stored: bool = False,
    published_unknown: str | None = None,
    parse_diagnostics: Sequence[Diagnostic] = (),
) -> CheckResult:
    """Check schemes (of one or several files) together.

    known_tiers: tiers of schemes defined elsewhere (published schemes), by scheme key, for
    `in tier` references; known_dependencies: which schemes those read, for cycle detection.
    stored: the schemes are versions published earlier, checked again to be used; what became
    an error since they were published (two tiers of one name) is a warning for them, so they
    stay usable until a corrected version replaces them.
    published_unknown: when the published schemes could not be read, why (no database, say):
    `in tier` references to schemes not among `schemes` then get a note with this as its hint
    instead of an error. parse_diagnostics: what parsing the schemes found (`Parsed`), to be
    reported with the checker's own.
    Raises `RuleError` with every diagnostic, in file order, when there is any error.
    """
    errors: list[Diagnostic] = []
    tiers_of: dict[str, Collection[str]] = dict(known_tiers or {})
    seen_keys: dict[str, t.Scheme] = {}
    for scheme in schemes:
        if scheme.key is None:
            continue
        if scheme.key in seen_keys:
            assert scheme.key_span is not None
            errors.append(
                Diagnostic.at(
                    scheme.file,
                    scheme.key_span,
                    f"scheme `{scheme.key}` is defined twice",
                    code=Code.DUPLICATE_SCHEME,
                )
            )
        seen_keys[scheme.key] = scheme
        tiers_of[scheme.key] = [tier.name for tier in scheme.tiers]
    results: list[c.CheckedScheme] = []
    others: list[Diagnostic] = []  # warnings and notes
    graph: dict[str, Collection[str]] = {k: list(v) for k, v in (known_dependencies or {}).items()}
    spans: dict[str, dict[str, t.Span]] = {}
    files: dict[str, str] = {}
    for scheme in schemes:
        late: list[Diagnostic] = []
        result, depends = _check_scheme(scheme, tiers_of, errors, late, others, published_unknown)
        if stored:
            others.extend(replace(d, severity="warning") for d in late)
        else:
            errors.extend(late)
        results.append(result)
        others.extend(lint_scheme(result, scheme))
        if scheme.key is not None:
            graph[scheme.key] = list(depends)
            spans[scheme.key] = depends
            files[scheme.key] = scheme.file
    errors.extend(_cycles(graph, spans, files))
    # A file's definitions are checked with each of its schemes: their errors once.
    unique = dict.fromkeys([*parse_diagnostics, *errors, *others])
    diagnostics = sorted(unique, key=position)
    if any(d.severity == "error" for d in diagnostics):
        raise RuleError(diagnostics)
    return CheckResult(tuple(results), tuple(diagnostics))


def check_condition(
    condition: t.Expression,
    file: str = "<condition>",
    known_tiers: Mapping[str, Collection[str]] | None = None,
) -> c.Condition:
    """Check a bare condition (the API's `where`); raises `RuleError`."""
    try:
        return _Checker(file, known_tiers or {}).condition(condition)
    except _Fail as fail:
        raise RuleError([fail.diagnostic(file)]) from None


def check_text(
    text: str, file: str = "<rules>", known_tiers: Mapping[str, Collection[str]] | None = None
) -> CheckResult:
    """Parse and check one file (see `check_files`)."""
    return check_files({file: text}, known_tiers)


def check_files(
    sources: Mapping[str, str],
    known_tiers: Mapping[str, Collection[str]] | None = None,
    *,
    known_dependencies: Mapping[str, Collection[str]] | None = None,
    published_unknown: str | None = None,
    bare_key: str | None = None,
) -> CheckResult:
    """Parse and check several files together, so `in tier` can reach across them; the
    arguments after `sources` (file name -> text) are those of `check`, and `bare_key` the key
    a file that is a bare list of tiers is checked under (as it would be published).

    Raises `RuleError` with the errors of every file, syntax errors included: each file is
    read past its syntax errors, and what could be read is checked.
    """
    from dsl.parser import parse_recovering

    schemes: list[t.Scheme] = []
    diagnostics: list[Diagnostic] = []
    for file, text in sources.items():
        parsed = parse_recovering(text, file)
        if parsed.file.bare and bare_key is not None:
            schemes.extend(replace(scheme, key=bare_key) for scheme in parsed.file.schemes)
        else:
            schemes.extend(parsed.file.schemes)
        diagnostics.extend(parsed.diagnostics)
    return check(
        schemes,
        known_tiers=known_tiers,
        known_dependencies=known_dependencies,
        published_unknown=published_unknown,
        parse_diagnostics=diagnostics,
    )


def evaluation_order(schemes: Sequence[c.CheckedScheme]) -> list[c.CheckedScheme]:
    """Schemes ordered so that each comes after the schemes whose tiers it reads.

    Dependencies outside `schemes` are taken as already evaluated; cycles were rejected by
    `check`.
    """
    by_key = {s.key: s for s in schemes if s.key is not None}
    done: set[str] = set()
    ordered: list[c.CheckedScheme] = []

    def visit(scheme: c.CheckedScheme) -> None:
        for key in sorted(scheme.depends_on):
            if key in by_key and key not in done:
                done.add(key)
                visit(by_key[key])
        if scheme not in ordered:
            ordered.append(scheme)

    for scheme in schemes:
        if scheme.key is not None:
            done.add(scheme.key)
        visit(scheme)
    return ordered
