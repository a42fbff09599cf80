"""Schemes and their rules: the published schemes, checking and previewing rule text (nothing
written), publishing a new version and evaluating a scheme now."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Annotated

import strawberry

from dsl import Diagnostic as RuleDiagnostic
from dsl import RuleError
from service.access.auth import Permission
from service.api.context import Info
from service.api.errors import Severity
from service.api.explain import Explanation
from service.api.fields import arg, resolver, shown_id
from service.db.ids import Ids, RowKind
from service.engine import evaluation, schemes, versions


@strawberry.type(description="A published scheme: its current version of the rules.")
class Scheme:
    key: str = strawberry.field(description="Key, as in `scheme KEY { ... }`.")
    title: str | None = strawberry.field(description="Title, if the rules give one.")
    version: int = strawberry.field(description="Current version (a new text, a new version).")
    source: str = strawberry.field(description="The rules, in canonical layout.")
    tiers: list[str] = strawberry.field(description="Tier names, in rule order.")
    depends_on: list[str] = strawberry.field(description="Schemes whose tiers it reads.")
    uses_population: bool = strawberry.field(
        description="Whether tiers rank customers against each other (scores, percentiles): "
        "such schemes change only on full evaluations, not on ingest."
    )

    @classmethod
    def of(cls, scheme: schemes.PublishedScheme) -> Scheme:
        return cls(
            key=scheme.key,
            title=scheme.title,
            version=scheme.version,
            source=scheme.source,
            tiers=list(scheme.tiers),
            depends_on=sorted(scheme.checked.depends_on),
            uses_population=scheme.uses_population,
        )


@strawberry.type(description="One published version of a scheme: who published it, when.")
class SchemeVersion:
    scheme: str = strawberry.field(description="Key of the scheme.")
    version: int = strawberry.field(description="The version, counted from 1.")
    published_at: dt.datetime = strawberry.field(description="When it was published.")
    published_by: str | None = strawberry.field(
        description="Who published it (the token's subject, an API key, `cli:<user>`), as "
        "the audit log has it; null if it has no entry."
    )
    source: str = strawberry.field(description="The rules of this version, canonical layout.")
    tiers: list[str] = strawberry.field(description="Tier names, in rule order.")
    current: bool = strawberry.field(description="Whether it is the scheme's current version.")

    @classmethod
    def of(cls, v: versions.SchemeVersion) -> SchemeVersion:
        return cls(
            scheme=v.scheme,
            version=v.version,
            published_at=v.published_at,
            published_by=v.published_by,
            source=v.source,
            tiers=list(v.tiers),
            current=v.current,
        )


@strawberry.enum(description="Whether a line of a diff was kept, added or removed.")
class LineChange(enum.Enum):
    SAME = "same"
    ADDED = "added"
    REMOVED = "removed"


@strawberry.type(description="One line of the difference between two versions' rules.")
class DiffLine:
    change: LineChange = strawberry.field(description="Kept, added or removed.")
    text: str = strawberry.field(description="The line.")
    from_line: int | None = strawberry.field(
        description="Its line number in the older version; null for an added line."
    )
    to_line: int | None = strawberry.field(
        description="Its line number in the newer version; null for a removed line."
    )


@strawberry.type(description="What changed from one version of a scheme's rules to another.")
class SchemeDiff:
    scheme: str = strawberry.field(description="Key of the scheme.")
    from_version: int = strawberry.field(description="The version compared from.")
    to_version: int = strawberry.field(description="The version compared to.")
    added_tiers: list[str] = strawberry.field(description="Tiers only the `to` version has.")
    removed_tiers: list[str] = strawberry.field(description="Tiers only the `from` one has.")
    lines: list[DiffLine] = strawberry.field(
        description="Every line of both texts, in order: kept, removed from `from`, added in "
        "`to` (a unified diff without its context limit)."
    )

    @classmethod
    def of(cls, d: versions.VersionDiff) -> SchemeDiff:
        return cls(
            scheme=d.scheme,
            from_version=d.from_version,
            to_version=d.to_version,
            added_tiers=list(d.added_tiers),
            removed_tiers=list(d.removed_tiers),
            lines=[
                DiffLine(
                    change=LineChange(line.change.value),
                    text=line.text,
                    from_line=line.from_line,
                    to_line=line.to_line,
                )
                for line in d.lines
            ],
        )


@strawberry.type(description="A problem found in rule text, where it is.")
class Diagnostic:
    line: int = strawberry.field(description="Line, from 1.")
    column: int = strawberry.field(description="Column, from 1.")
    end_line: int = strawberry.field(description="Line where the problem's span ends.")
    end_column: int = strawberry.field(description="Column where the problem's span ends.")
    severity: Severity = strawberry.field(description="`ERROR`, `WARNING` or `NOTE`.")
    code: str = strawberry.field(
        description="What kind of problem it is, as a stable code such as `unknown-metric` or "
        "`syntax-error` (the list is in docs/rules.md); the message may be reworded, the code "
        "is not."
    )
    message: str = strawberry.field(description="What is wrong.")
    hint: str | None = strawberry.field(description="How to fix it, when known.")

    @classmethod
    def of(cls, d: RuleDiagnostic) -> Diagnostic:
        return cls(
            line=d.line,
            column=d.column,
            end_line=d.end_line,
            end_column=d.end_column,
            severity=Severity(d.severity),
            code=d.code.value,
            message=d.message,
            hint=d.hint,
        )


@strawberry.type(description="The result of checking rule text (nothing is written).")
class RuleCheck:
    ok: bool = strawberry.field(description="No errors (warnings may remain).")
    diagnostics: list[Diagnostic] = strawberry.field(description="Errors and warnings.")


@strawberry.type(description="Customers and revenue a tier would hold.")
class TierCount:
    tier: str = strawberry.field(description="The tier.")
    customer_count: int = strawberry.field(description="Customers it would hold.")
    revenue: Decimal = strawberry.field(description="Their revenue.")


@strawberry.type(description="A customer who would move, and why, under the previewed rules.")
class MovedCustomer:
    customer_id: strawberry.ID = strawberry.field(description="The customer's id.")
    explanation: Explanation = strawberry.field(
        description="Every tier of the previewed rules with the customer's values."
    )


@strawberry.type(description="Customers who would move from one tier to another.")
class TierMove:
    from_tier: str | None = strawberry.field(description="Current tier; null for none.")
    to_tier: str | None = strawberry.field(description="Tier after publishing; null for none.")
    customer_count: int = strawberry.field(description="How many customers.")
    sample: list[MovedCustomer] = strawberry.field(
        description=f"Up to {evaluation.SAMPLES_PER_MOVE} of them (the first by id), each with "
        "the explanation of their new tier."
    )


@strawberry.type(description="What publishing one scheme would do.")
class SchemePreview:
    scheme: str = strawberry.field(description="Key of the scheme.")
    as_of: dt.datetime = strawberry.field(description="The time the rules were evaluated at.")
    tiers: list[TierCount] = strawberry.field(description="Every tier, in rule order.")
    moves: list[TierMove] = strawberry.field(
        description="Who would move, against current memberships, largest first."
    )

    @classmethod
    def of(cls, preview: evaluation.Preview) -> SchemePreview:
        return cls(
            scheme=preview.scheme,
            as_of=preview.as_of,
            tiers=[
                TierCount(tier=t.tier, customer_count=t.customers, revenue=t.revenue)
                for t in preview.tiers
            ],
            moves=[
                TierMove(
                    from_tier=m.from_tier,
                    to_tier=m.to_tier,
                    customer_count=m.customers,
                    sample=[
                        MovedCustomer(
                            customer_id=strawberry.ID(sample.customer),
                            explanation=Explanation.of(preview.scheme, sample.explanation),
                        )
                        for sample in preview.samples
                        if (sample.from_tier, sample.to_tier) == (m.from_tier, m.to_tier)
                    ],
                )
                for m in preview.moves
            ],
        )


@strawberry.type(description="What publishing rule text would do (nothing is written).")
class RulePreview:
    schemes: list[SchemePreview] = strawberry.field(description="One per scheme in the text.")


@strawberry.type(description="One evaluation of a scheme over all its customers.")
class EvaluationRun:
    id: strawberry.ID = strawberry.field(description="Identifier of the run.")
    scheme: str = strawberry.field(description="Key of the scheme.")
    version: int = strawberry.field(description="Version of the rules evaluated.")
    as_of: dt.datetime = strawberry.field(description="The time the rules were evaluated at.")
    customer_count: int = strawberry.field(description="Customers placed in some tier.")
    changed: int = strawberry.field(description="Tier changes recorded.")
    duration_ms: int = strawberry.field(description="How long it took.")
    tiers: list[TierCount] = strawberry.field(description="Customers and revenue per tier.")

    @classmethod
    def of(cls, run: evaluation.RunResult, ids: Ids) -> EvaluationRun:
        return cls(
            id=shown_id(ids, RowKind.run, run.run_id),
            scheme=run.scheme,
            version=run.version,
            as_of=run.as_of,
            customer_count=run.customers,
            changed=run.changed,
            duration_ms=run.duration_ms,
            tiers=[
                TierCount(tier=t.tier, customer_count=t.customers, revenue=t.revenue)
                for t in run.tiers
            ],
        )


@strawberry.type(description="What publishing rules did.")
class PublishResult:
    scheme: Scheme = strawberry.field(description="The scheme's current version now.")
    changed: bool = strawberry.field(
        description="Whether a new version was made (false: the same rules were current)."
    )
    warnings: list[Diagnostic] = strawberry.field(description="Warnings about the rules.")
    runs: list[EvaluationRun] = strawberry.field(
        description="Evaluations run to make the new rules current (this scheme and those "
        "that read its tiers); empty when nothing changed or evaluation was not asked for."
    )


def _file(key: str | None) -> str:
    """The file name diagnostics of rules for scheme ``key`` carry."""
    return f"{key}.rules" if key is not None else "<rules>"


def _midnight(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime.combine(day, dt.time(), dt.UTC)


@strawberry.type
class SchemeQuery:
    @resolver(
        description="The published schemes, dependencies first.", needs=Permission.read_reports
    )
    async def schemes(self, info: Info) -> list[Scheme]:
        context = info.context
        async with context.transaction() as connection:
            found = await schemes.current(connection, context.tenant)
        return [Scheme.of(scheme) for scheme in found]

    @resolver(
        "Every published version of a scheme, newest first: who published it and when. "
        "NOT_FOUND for a scheme never published.",
        needs=Permission.read_reports,
    )
    async def scheme_versions(
        self, info: Info, scheme: Annotated[str, arg("Key of the scheme.")]
    ) -> list[SchemeVersion]:
        context = info.context
        async with context.transaction() as connection:
            found = await versions.versions(connection, context.tenant, scheme)
        return [SchemeVersion.of(v) for v in found]

    @resolver(
        "The difference between two versions of a scheme's rules, line by line, and the "
        "tiers added and removed. NOT_FOUND for an unknown scheme or version.",
        needs=Permission.read_reports,
    )
    async def scheme_diff(
        self,
        info: Info,
        scheme: Annotated[str, arg("Key of the scheme.")],
        from_version: Annotated[int, arg("The older version (or any).")],
        to_version: Annotated[int, arg("The newer version (or any).")],
    ) -> SchemeDiff:
        context = info.context
        async with context.transaction() as connection:
            found = await versions.diff(
                connection, context.tenant, scheme, from_version, to_version
            )
        return SchemeDiff.of(found)

    @resolver(
        "Check rule text against the published schemes: errors and warnings "
        "with line and column. Nothing is written.",
        needs=Permission.check_rules,
    )
    async def check_rules(
        self,
        info: Info,
        source: Annotated[str, arg("Rule text, as in a .rules file.")],
        key: Annotated[
            str | None,
            arg("The scheme a bare list of tiers is (as `publishScheme` would take it)."),
        ] = None,
    ) -> RuleCheck:
        context = info.context
        # Bad rules are this field's answer, not an error.
        try:
            draft = await schemes.rule_work(
                len(source),
                schemes.parse_for_publishing,
                source,
                _file(key),
                key,
                require_key=False,
            )
            async with context.transaction() as connection:
                result = await schemes.check_against_published(
                    connection, context.tenant, draft, chars=len(source)
                )
        except RuleError as error:
            return RuleCheck(ok=False, diagnostics=[Diagnostic.of(d) for d in error.diagnostics])
        return RuleCheck(ok=True, diagnostics=[Diagnostic.of(d) for d in result.warnings])

    @resolver(
        "What publishing rule text would do: customers and revenue per tier and "
        "who would move, evaluated now or at the start of `asOf` (a backtest: only customers "
        "who existed then, `in tier` as of then; a day in the future is BAD_INPUT). Nothing "
        "is written. Bad rules give a BAD_RULE error.",
        needs=Permission.check_rules,
    )
    async def preview_rules(
        self,
        info: Info,
        source: Annotated[str, arg("Rule text, as in a .rules file.")],
        as_of: Annotated[
            dt.date | None, arg("Evaluate on the data before this day (a backtest); default now.")
        ] = None,
        key: Annotated[
            str | None,
            arg(
                "The scheme a bare list of tiers is, as `publishScheme` takes it (and as "
                "`tierwise rules preview --scheme KEY`); needed for such a list."
            ),
        ] = None,
    ) -> RulePreview:
        context = info.context
        previews = await evaluation.preview(
            context.engine,
            context.tenant,
            source,
            file=_file(key),
            scheme_key=key,
            as_of=_midnight(as_of),
        )
        return RulePreview(schemes=[SchemePreview.of(p) for p in previews])


@strawberry.type
class SchemeMutation:
    @resolver(
        "Publish rules as scheme `key` (a bare list of tiers, or a `scheme key { ... }` "
        "block); a new version only when the text changed. With `evaluate`, the new rules "
        "are made current at once. Bad rules give a BAD_RULE error and change nothing.",
        needs=Permission.publish_rules,
    )
    async def publish_scheme(
        self,
        info: Info,
        key: Annotated[str, arg("The scheme's key.")],
        source: Annotated[str, arg("Rule text: tiers, or one `scheme key { ... }` block.")],
        evaluate: Annotated[bool, arg("Make the new rules current at once.")] = True,
    ) -> PublishResult:
        context = info.context
        async with context.transaction() as connection:
            published = await schemes.publish(
                connection,
                context.tenant,
                source,
                file=f"{key}.rules",
                scheme_key=key,
                actor=context.caller.actor,
            )
        (scheme,) = published.schemes
        runs = []
        if evaluate and published.changed:
            runs = await evaluation.evaluate_all(
                context.engine, context.tenant, keys=[key], trigger="api"
            )
        ids = await context.ids()
        return PublishResult(
            scheme=Scheme.of(scheme),
            changed=key in published.changed,
            warnings=[Diagnostic.of(d) for d in published.warnings.warnings],
            runs=[EvaluationRun.of(run, ids) for run in runs],
        )

    @resolver(
        "Evaluate a scheme now (and the schemes that read its tiers): tiers become current "
        "and every change is recorded and announced. NOT_FOUND for an unpublished scheme.",
        needs=Permission.publish_rules,
    )
    async def evaluate_scheme(
        self, info: Info, scheme: Annotated[str, arg("Key of a published scheme.")]
    ) -> list[EvaluationRun]:
        context = info.context
        runs = await evaluation.evaluate_all(
            context.engine, context.tenant, keys=[scheme], trigger="api"
        )
        if not runs:
            raise schemes.unpublished(scheme, context.tenant)
        ids = await context.ids()
        return [EvaluationRun.of(run, ids) for run in runs]
