"""Explanations: why a customer is in their tier of a scheme, every tier in rule order with
each clause of its condition and the customer's values (`dsl.explain`, run in process through
the request's `explanations` loader). The `explain` fields that serve them are the customers'
(`service.api.customers`)."""

from __future__ import annotations

import enum

import strawberry
from strawberry.scalars import JSON

from dsl.explain import ClauseTrace
from dsl.explain import Explanation as RuleExplanation
from service.api.context import Info


@strawberry.enum(description="What a condition came to for one customer.")
class ClauseResult(enum.Enum):
    TRUE = strawberry.enum_value("true", description="It holds.")
    FALSE = strawberry.enum_value("false", description="It does not hold.")
    UNKNOWN = strawberry.enum_value(
        "unknown", description="A value it compares is null (e.g. recency without orders)."
    )


@strawberry.enum(description="What a tier's rule came to for one customer.")
class TierResult(enum.Enum):
    TRUE = strawberry.enum_value("true", description="Its condition holds.")
    FALSE = strawberry.enum_value("false", description="Its condition does not hold.")
    UNKNOWN = strawberry.enum_value(
        "unknown", description="Its condition compares a null value: the tier does not take them."
    )
    OTHERWISE = strawberry.enum_value(
        "otherwise", description="An `otherwise` tier: it takes whoever no tier before took."
    )


@strawberry.type(description="One clause of a tier's condition, evaluated for one customer.")
class Clause:
    text: str = strawberry.field(description="The clause in canonical rule text.")
    result: ClauseResult = strawberry.field(
        description="`TRUE`, `FALSE` or `UNKNOWN` (a null value)."
    )
    metric: str | None = strawberry.field(description="For a comparison: the metric compared.")
    actual: JSON | None = strawberry.field(description="The metric's value for this customer.")
    operator: str | None = strawberry.field(description="`>`, `between`, `in`, `is null`, ...")
    expected: JSON | None = strawberry.field(
        description="What it was compared with, in the JSON type of `actual`: whole counts "
        "and days as numbers, decimals as exact strings."
    )
    unit: str | None = strawberry.field(
        description="The unit of `actual` and `expected`: the metric's (`currency`, `days`, "
        "`orders`, ...; the metric catalog's), or `days` for a duration."
    )
    line: int = strawberry.field(description="Line of the clause in the scheme's source.")
    column: int = strawberry.field(description="Column of the clause in the scheme's source.")
    children: list[Clause] = strawberry.field(description="The parts of `and`, `or`, `not`.")

    @classmethod
    def of(cls, trace: ClauseTrace) -> Clause:
        return cls(
            text=trace.text,
            result=ClauseResult(trace.result),
            metric=trace.metric,
            actual=JSON(trace.actual),
            operator=trace.operator,
            expected=JSON(trace.expected),
            unit=trace.unit,
            line=trace.line,
            column=trace.column,
            children=[cls.of(child) for child in trace.children],
        )


@strawberry.type(description="One tier of a scheme, evaluated for one customer.")
class TierTrace:
    name: str = strawberry.field(description="The tier's name.")
    index: int = strawberry.field(description="Position in the scheme, from 0.")
    result: TierResult = strawberry.field(description="`TRUE`, `FALSE`, `UNKNOWN` or `OTHERWISE`.")
    matched: bool = strawberry.field(description="Whether this tier took the customer.")
    clause: Clause | None = strawberry.field(description="The condition; null for `otherwise`.")
    kept: str | None = strawberry.field(
        default=None,
        description="For a tier with `keep` that keeps the customer though its condition no "
        "longer holds: `kept: qualified last on DATE, held until DATE`; null otherwise.",
    )


@strawberry.type(description="A definition (`define NAME = ...`) the scheme's tiers use.")
class DefinitionValue:
    name: str = strawberry.field(description="The defined name.")
    text: str = strawberry.field(description="What it stands for, in canonical rule text.")
    value: JSON | None = strawberry.field(
        description="A defined value's value for this customer (null: unknown, or a condition)."
    )
    result: ClauseResult | None = strawberry.field(
        description="A defined condition's outcome for this customer (null for a value)."
    )
    line: int = strawberry.field(description="Line of the definition in the scheme's source.")
    column: int = strawberry.field(description="Column of the definition.")


@strawberry.type(description="Why a customer is in their tier of a scheme: every tier in order.")
class Explanation:
    scheme: str = strawberry.field(description="Key of the scheme.")
    tier: str | None = strawberry.field(
        description="The tier the rules give the customer now (null when none matches); "
        "it differs from the membership only when data changed since the last evaluation."
    )
    tiers: list[TierTrace] = strawberry.field(description="Every tier, in rule order.")
    definitions: list[DefinitionValue] = strawberry.field(
        description="The definitions the tiers use, in the order written, with their values."
    )

    @classmethod
    def of(cls, scheme: str, explanation: RuleExplanation) -> Explanation:
        return cls(
            scheme=scheme,
            tier=explanation.tier,
            tiers=[
                TierTrace(
                    name=t.name,
                    index=t.index,
                    result=TierResult(t.result),
                    matched=t.matched,
                    clause=Clause.of(t.clause) if t.clause else None,
                    kept=t.kept,
                )
                for t in explanation.tiers
            ],
            definitions=[
                DefinitionValue(
                    name=d.name,
                    text=d.text,
                    value=JSON(d.value),
                    result=ClauseResult(d.result) if d.result is not None else None,
                    line=d.line,
                    column=d.column,
                )
                for d in explanation.definitions
            ],
        )


async def explanation(info: Info, customer_id: int, scheme: str) -> Explanation:
    """Why customer ``customer_id`` (internal id) is in their tier of ``scheme``; raises
    `NotFound` for a scheme the tenant has not published."""
    traced = await info.context.loaders.explanations.load((customer_id, scheme))
    return Explanation.of(scheme, traced)
