"""Lint warnings: rules that are valid but cannot do what their author meant.

Conditions are reduced to a disjunction of conjunctions of per-metric constraints (ranges and
value sets). Atoms that do not fit (`not`, `!=`, `contains`, metric against metric, ...) are
dropped, which can only make a condition look *wider*: so "can never be true" is only claimed
when it is certain, and an earlier tier only counts as covering a later one when it has no
dropped atoms.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, assert_never

from dsl import checked as c
from dsl import tree as t
from dsl.catalog import MetricRef
from dsl.codes import Code
from dsl.errors import Diagnostic

_MAX_CONJUNCTIONS = 64
_MAX_COVERS = 10_000
Point = Decimal | dt.datetime | str | bool


class _Range(NamedTuple):
    # A named tuple rather than a frozen dataclass: several are made per condition, and tuples
    # build faster. Only ever compared with other ranges.
    low: Point | None = None
    low_open: bool = False
    high: Point | None = None
    high_open: bool = False
    values: frozenset[Point] | None = None  # None: any value in the range

    def contains(self, v: Point) -> bool:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):  # type: ignore[operator]
            return False
        return self.high is None or not (v > self.high or (self.high_open and v == self.high))  # type: ignore[operator]

    def intersect(self, other: _Range) -> _Range:
        low, low_open = self.low, self.low_open
        if other.low is not None and (
            low is None or other.low > low or (other.low == low and other.low_open)  # type: ignore[operator]
        ):
            low, low_open = other.low, other.low_open
        high, high_open = self.high, self.high_open
        if other.high is not None and (
            high is None or other.high < high or (other.high == high and other.high_open)  # type: ignore[operator]
        ):
            high, high_open = other.high, other.high_open
        values = self.values
        if other.values is not None:
            values = other.values if values is None else values & other.values
        merged = _Range(low, low_open, high, high_open, None)
        if values is not None:
            values = frozenset(v for v in values if merged.contains(v))
        return _Range(low, low_open, high, high_open, values)

    def empty(self) -> bool:
        if self.values is not None:
            return not self.values
        if self.low is None or self.high is None:
            return False
        return self.low > self.high or (  # type: ignore[operator]
            self.low == self.high and (self.low_open or self.high_open)
        )

    def within(self, other: _Range) -> bool:
        """Every value allowed here is allowed by other."""
        if self.values is not None:
            return all(
                other.contains(v) and (other.values is None or v in other.values)
                for v in self.values
            )
        if other.values is not None:
            return False
        if other.low is not None and (
            self.low is None
            or self.low < other.low  # type: ignore[operator]
            or (self.low == other.low and other.low_open and not self.low_open)
        ):
            return False
        return not (
            other.high is not None
            and (
                self.high is None
                or self.high > other.high  # type: ignore[operator]
                or (self.high == other.high and other.high_open and not self.high_open)
            )
        )


# Metrics are numbered per scheme: small ints hash far faster than MetricRef dataclasses.
Conjunction = dict[int, _Range]


@dataclass
class _Dnf:
    terms: list[Conjunction]
    exact: bool  # False when atoms were dropped


def _point(const: c.Const) -> Point | None:
    value = const.value
    if isinstance(value, bool | str | dt.datetime | Decimal):
        return value
    return Decimal(value) if isinstance(value, int) else None


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


# Conditions other than `and` / `or`: each is one atom of the disjunctive normal form.
_Atom = c.Compare | c.Between | c.InList | c.TextMatch | c.IsNull | c.Member | c.Not


def _atom(node: _Atom) -> tuple[MetricRef, _Range] | None:
    """The metric a simple condition constrains, and how; None when it does not fit a range."""
    if isinstance(node, c.Compare):
        ref, const = node.left, node.right
        op: str = node.op
        if isinstance(ref, c.Const):
            ref, const, op = const, ref, _FLIP[op]
        if not (isinstance(ref, c.Ref) and isinstance(const, c.Const)) or op == "!=":
            return None
        v = _point(const)
        if v is None:
            return None
        # Only the one range needed is built.
        if op == "=":
            return ref.ref, _Range(values=frozenset([v]))
        if op == "<":
            return ref.ref, _Range(high=v, high_open=True)
        if op == "<=":
            return ref.ref, _Range(high=v)
        if op == ">":
            return ref.ref, _Range(low=v, low_open=True)
        if op == ">=":
            return ref.ref, _Range(low=v)
        raise KeyError(op)
    elif isinstance(node, c.Between):
        if (
            not node.negated
            and isinstance(node.operand, c.Ref)
            and isinstance(node.low, c.Const)
            and isinstance(node.high, c.Const)
        ):
            low, high = _point(node.low), _point(node.high)
            if low is not None and high is not None:
                return node.operand.ref, _Range(low=low, high=high)
        return None
    elif isinstance(node, c.InList):
        if not node.negated and isinstance(node.operand, c.Ref):
            points = [_point(item) for item in node.items]
            if all(p is not None for p in points):
                values = frozenset(p for p in points if p is not None)
                return node.operand.ref, _Range(values=values)
        return None
    elif isinstance(node, (c.TextMatch, c.IsNull, c.Member, c.Not)):
        return None
    else:
        assert_never(node)


def _dnf(node: c.Condition, ids: dict[MetricRef, int]) -> _Dnf | None:
    """None when the expansion would be too large to be worth it."""
    # isinstance rather than match: a hot walk (HOT_PATH_DISPATCH in dsl.tree).
    if isinstance(node, c.Or):
        terms: list[Conjunction] = []
        exact = True
        for item in node.items:
            sub = _dnf(item, ids)
            if sub is None:
                return None
            terms.extend(sub.terms)
            exact = exact and sub.exact
        return _Dnf(terms, exact) if len(terms) <= _MAX_CONJUNCTIONS else None
    elif isinstance(node, c.And):
        result = _Dnf([{}], True)
        for item in node.items:
            sub = _dnf(item, ids)
            if sub is None:
                return None
            combined = [_meet(a, b) for a in result.terms for b in sub.terms]
            if len(combined) > _MAX_CONJUNCTIONS:
                return None
            result = _Dnf(combined, result.exact and sub.exact)
        return result
    elif isinstance(node, (c.Compare, c.Between, c.InList, c.TextMatch, c.IsNull, c.Member, c.Not)):
        atom = _atom(node)
        if atom is None:
            return _Dnf([{}], False)
        return _Dnf([{ids.setdefault(atom[0], len(ids)): atom[1]}], True)
    else:
        assert_never(node)


def _meet(a: Conjunction, b: Conjunction) -> Conjunction:
    out = dict(a)
    for ref, r in b.items():
        out[ref] = out[ref].intersect(r) if ref in out else r
    return out


def _empty(term: Conjunction) -> bool:
    for r in term.values():  # noqa: SIM110 (a loop: no generator made per call)
        if r.empty():
            return True
    return False


def _within(term: Conjunction, cover: Conjunction) -> bool:
    # Cheap test first: a cover can only contain a term that constrains all its metrics.
    if not term.keys() >= cover.keys():
        return False
    for ref, r in cover.items():  # noqa: SIM110 (a loop: no generator made per call)
        if not term[ref].within(r):
            return False
    return True


def lint_scheme(scheme: c.CheckedScheme, source: t.Scheme) -> Iterator[Diagnostic]:
    """Warnings for one scheme, tier by tier: a tier name used twice, a tier after `otherwise`,
    a condition that can never be true, and a tier whose every customer earlier tiers (one, or
    several together) already take.

    `scheme` is `source` checked (their tiers are paired in order; ValueError if their numbers
    differ). Yields warning diagnostics; claims only what is certain (see the module docstring).
    """
    file = scheme.file
    otherwise: t.Tier | None = None
    earlier: _Covers = {}
    ids: dict[MetricRef, int] = {}
    for checked_tier, tier in zip(scheme.tiers, source.tiers, strict=True):
        if otherwise is not None:
            yield _warn(
                file,
                tier.name_span,
                f"tier `{tier.name}` comes after `otherwise` (line {otherwise.span.line}) "
                "and can never match",
                code=Code.AFTER_OTHERWISE,
            )
            continue
        if checked_tier.condition is None:
            if tier.condition is None:
                otherwise = tier
            continue
        dnf = _dnf(checked_tier.condition, ids)
        if dnf is None:
            continue
        live = [term for term in dnf.terms if not _empty(term)]
        if not live:
            assert tier.condition is not None
            yield _warn(
                file,
                tier.condition.span,
                "this condition can never be true",
                "two of its parts exclude each other",
                code=Code.NEVER_TRUE,
            )
            continue
        covering = _covering(live, earlier)
        if covering:
            lines = ", ".join(f"`{x.name}` (line {x.span.line})" for x in covering)
            yield _warn(
                file,
                tier.name_span,
                f"tier `{tier.name}` can never match: every customer it would take is "
                f"already taken by {lines}",
                code=Code.SHADOWED_TIER,
            )
        if dnf.exact and len(earlier) < _MAX_COVERS and all(len(x) <= 6 for x in live):
            for term in live:
                earlier.setdefault(frozenset(term), []).append((tier, term))


_Covers = dict[frozenset[int], list[tuple[t.Tier, Conjunction]]]


def _covering(live: list[Conjunction], earlier: _Covers) -> list[t.Tier]:
    """Earlier tiers that together take every customer of `live`, or [] if not shown."""
    used: list[t.Tier] = []
    for term in live:
        found = _single_cover(term, earlier) or _union_cover(term, earlier)
        if not found:
            return []
        used.extend(tier for tier in found if tier not in used)
    return used


def _single_cover(term: Conjunction, earlier: _Covers) -> list[t.Tier]:
    keys = list(term)
    if len(keys) > 10:
        return []
    # A cover can only contain a term that constrains all of the cover's metrics: look covers
    # up by each subset of the term's (few) metrics instead of scanning them all.
    for mask in range(1, 1 << len(keys)):
        if len(keys) == 1:  # the usual case: one subset, the term's one metric
            subset = frozenset(keys)
        else:
            subset = frozenset(k for i, k in enumerate(keys) if mask >> i & 1)
        for tier, cover in earlier.get(subset, ()):
            if _within(term, cover):
                return [tier]
    return []


def _union_cover(term: Conjunction, earlier: _Covers) -> list[t.Tier]:
    """For a term on one metric: earlier single-metric ranges that together cover it."""
    if len(term) != 1:
        return []
    [(key, wanted)] = term.items()
    covers = earlier.get(frozenset([key]), [])
    if wanted.values is not None:
        tiers = []
        for v in wanted.values:
            tier = next(
                (tr for tr, c in covers if _Range(values=frozenset([v])).within(c[key])), None
            )
            if tier is None:
                return []
            tiers.append(tier)
        return list(dict.fromkeys(tiers))
    ranges = [(tier, c[key]) for tier, c in covers if c[key].values is None]
    return _sweep(wanted, ranges)


def _sweep(wanted: _Range, ranges: list[tuple[t.Tier, _Range]]) -> list[t.Tier]:
    """Walk from the low end of `wanted` to its high end, always taking the range that
    reaches furthest from the current point; [] if a gap is left."""
    point, point_open = wanted.low, wanted.low_open  # None: minus infinity
    used: list[t.Tier] = []
    while True:
        best: tuple[t.Tier, _Range] | None = None
        for tier, r in ranges:
            if (
                _starts_by(r, point, point_open)
                and _reaches(r, point, point_open)
                and (best is None or _further(r, best[1]))
            ):
                best = (tier, r)
        if best is None:
            return []
        if best[0] not in used:
            used.append(best[0])
        reach = best[1]
        if reach.high is None:
            return used
        point, point_open = reach.high, not reach.high_open
        if wanted.high is not None and (
            point > wanted.high or (point == wanted.high and (point_open or wanted.high_open))  # type: ignore[operator]
        ):
            return used


def _starts_by(r: _Range, point: Point | None, point_open: bool) -> bool:
    if r.low is None:
        return True
    if point is None:
        return False
    return bool(r.low < point or (r.low == point and (not r.low_open or point_open)))  # type: ignore[operator]


def _reaches(r: _Range, point: Point | None, point_open: bool) -> bool:
    if r.high is None or point is None:
        return True
    return bool(r.high > point or (r.high == point and not r.high_open and not point_open))  # type: ignore[operator]


def _further(a: _Range, b: _Range) -> bool:
    if b.high is None:
        return False
    if a.high is None:
        return True
    return bool(a.high > b.high or (a.high == b.high and b.high_open and not a.high_open))  # type: ignore[operator]


def _warn(
    file: str, span: t.Span, message: str, hint: str | None = None, *, code: Code
) -> Diagnostic:
    return Diagnostic.at(file, span, message, hint, severity="warning", code=code)
