"""Segments: customers, shares and revenue per tier over the current memberships
(`service.engine.analytics`), with each tier's active strategies."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import strawberry

from service.access.auth import Permission
from service.api.context import Info
from service.api.fields import arg, known_id, resolver, shown_id
from service.api.limits import page_size
from service.api.strategies import Strategy
from service.db.ids import Ids, RowKind
from service.engine import analytics
from service.errors import UserError

SHARE_STEP = Decimal("0.000001")


@strawberry.type(description="Customers and revenue of one tier, over current memberships.")
class Segment:
    scheme: str = strawberry.field(description="Key of the scheme.")
    tier: str = strawberry.field(description="The tier.")
    customer_count: int = strawberry.field(description="Customers in the tier.")
    customer_share: Decimal = strawberry.field(
        description="Share of all customers, 0-1, to 6 decimal places."
    )
    revenue: Decimal = strawberry.field(
        description="Revenue of its customers: their orders dated before now."
    )
    revenue_share: Decimal = strawberry.field(
        description="Share of all revenue, 0-1, to 6 decimal places."
    )
    average_revenue: Decimal | None = strawberry.field(
        description="Revenue per customer; null for an empty tier."
    )

    @resolver(description="Active strategies of the tier, by priority.")
    async def strategies(self, info: Info) -> list[Strategy]:
        found = await info.context.loaders.tier_strategies.load((self.scheme, self.tier))
        ids = await info.context.ids()
        return [Strategy.of(s, ids) for s in found if s.active]

    @classmethod
    def of(cls, row: analytics.SegmentRow) -> Segment:
        return cls(
            scheme=row.scheme,
            tier=row.tier,
            customer_count=row.customers,
            customer_share=row.customer_share.quantize(SHARE_STEP),
            revenue=row.revenue,
            revenue_share=row.revenue_share.quantize(SHARE_STEP),
            average_revenue=row.average_revenue,
        )


@strawberry.type(description="An evaluation of a scheme that made its result current.")
class SchemeRun:
    id: strawberry.ID = strawberry.field(description="Identifier of the run.")
    scheme: str = strawberry.field(description="Key of the scheme.")
    version: int = strawberry.field(description="Version of the rules evaluated.")
    trigger: str = strawberry.field(description="What started it: `publish`, `scheduled`, ...")
    status: str = strawberry.field(description="`running`, `succeeded` or `failed`.")
    as_of: dt.datetime = strawberry.field(description="The time the rules were evaluated at.")
    started_at: dt.datetime = strawberry.field(description="When it started.")
    finished_at: dt.datetime | None = strawberry.field(description="When it ended; null if not.")
    duration_ms: int | None = strawberry.field(description="How long it took, in milliseconds.")
    customer_count: int | None = strawberry.field(description="Customers placed in some tier.")
    changed: int | None = strawberry.field(description="Tier changes it recorded.")

    @classmethod
    def of(cls, row: analytics.RunRow, ids: Ids) -> SchemeRun:
        return cls(
            id=shown_id(ids, RowKind.run, row.id),
            scheme=row.scheme,
            version=row.version,
            trigger=row.trigger,
            status=row.status,
            as_of=row.as_of,
            started_at=row.started_at,
            finished_at=row.finished_at,
            duration_ms=row.duration_ms,
            customer_count=row.customers,
            changed=row.changed,
        )


@strawberry.type(description="A tier's customers at the end of one day (UTC).")
class TierSize:
    day: dt.date = strawberry.field(description="The day.")
    tier: str = strawberry.field(description="The tier.")
    customer_count: int = strawberry.field(description="Its customers at the end of the day.")


@strawberry.type(description="Customers who went from one tier to another (or stayed).")
class Migration:
    from_tier: str | None = strawberry.field(description="Tier before; null for none.")
    to_tier: str | None = strawberry.field(description="Tier after; null for none.")
    customer_count: int = strawberry.field(description="How many customers.")


@strawberry.type(description="How many of a tier's customers bought nothing in a period.")
class TierChurn:
    tier: str = strawberry.field(description="The tier at the start of the period.")
    customer_count: int = strawberry.field(description="Its customers at the start.")
    churned: int = strawberry.field(
        description="Of those, customers with no purchase in it (cancelled orders, refunds "
        "and orders refunded in full are none)."
    )
    rate: Decimal | None = strawberry.field(
        description="churned / customers, 0-1, to 6 decimal places; null if empty."
    )


@strawberry.type(description="A value of a text field in the data, and how often it occurs.")
class TextValue:
    value: str = strawberry.field(description="The value, exactly as rules must write it.")
    customer_count: int = strawberry.field(description="Customers with this value.")


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def _day_end(day: dt.date) -> dt.datetime:
    """The last instant of a day (UTC): a state "at the end of" it."""
    return _day_start(day + dt.timedelta(days=1)) - dt.timedelta(microseconds=1)


@strawberry.type
class SegmentQuery:
    @resolver(
        "One segment per tier of each scheme (or of `scheme`), from the current memberships.",
        needs=Permission.read_reports,
    )
    async def segments(
        self, info: Info, scheme: Annotated[str | None, arg("Only this scheme's tiers.")] = None
    ) -> list[Segment]:
        context = info.context
        async with context.transaction() as connection:
            rows = await analytics.segment_report(connection, context.tenant, scheme)
        return [Segment.of(row) for row in rows]

    @resolver(
        "The scheme's newest evaluation runs that made their result current (backtests left "
        "out), newest first: when, which version, how long. NOT_FOUND for an unknown scheme.",
        needs=Permission.read_reports,
    )
    async def evaluation_runs(
        self,
        info: Info,
        scheme: Annotated[str, arg("Key of the scheme.")],
        last: Annotated[int, arg("How many of the newest runs.")] = 10,
    ) -> list[SchemeRun]:
        context = info.context
        page_size(context.settings, "last", last)
        async with context.transaction() as connection:
            rows = await analytics.evaluation_runs(connection, context.tenant, scheme, last)
        ids = await context.ids()
        return [SchemeRun.of(row, ids) for row in rows]

    @resolver(
        "Each tier's customers at the end of every day from `fromDate` to `toDate` (UTC, at most "
        f"{analytics.MAX_SIZE_DAYS} days), rebuilt from the recorded tier changes. NOT_FOUND "
        "for an unknown scheme.",
        needs=Permission.read_reports,
    )
    async def tier_sizes(
        self,
        info: Info,
        scheme: Annotated[str, arg("Key of the scheme.")],
        from_date: Annotated[dt.date, arg("The first day.")],
        to_date: Annotated[dt.date, arg("The last day.")],
    ) -> list[TierSize]:
        context = info.context
        async with context.transaction() as connection:
            rows = await analytics.tier_sizes(
                connection, context.tenant, scheme, from_date, to_date
            )
        return [TierSize(day=r.day, tier=r.tier, customer_count=r.customers) for r in rows]

    @resolver(
        "How many customers went from each tier to each other (staying put included), "
        "between two runs (`fromRun`, `toRun`: the tiers after each) or two days "
        "(`fromDate`, `toDate`: the tiers recorded at the end of each, UTC). Non-empty cells "
        "only, in tier order. NOT_FOUND for an unknown scheme or run.",
        needs=Permission.read_reports,
    )
    async def migration_matrix(
        self,
        info: Info,
        scheme: Annotated[str, arg("Key of the scheme.")],
        from_run: Annotated[strawberry.ID | None, arg("The earlier run.")] = None,
        to_run: Annotated[strawberry.ID | None, arg("The later run.")] = None,
        from_date: Annotated[dt.date | None, arg("The earlier day.")] = None,
        to_date: Annotated[dt.date | None, arg("The later day.")] = None,
    ) -> list[Migration]:
        context = info.context
        runs = (from_run, to_run)
        dates = (from_date, to_date)
        ids = await context.ids()
        async with context.transaction() as connection:
            if from_run is not None and to_run is not None and dates == (None, None):
                cells = await analytics.migration_matrix(
                    connection,
                    context.tenant,
                    scheme,
                    known_id(ids, RowKind.run, from_run, "fromRun"),
                    known_id(ids, RowKind.run, to_run, "toRun"),
                    names=(from_run, to_run),
                )
            elif from_date is not None and to_date is not None and runs == (None, None):
                cells = await analytics.migration_matrix_between_dates(
                    connection, context.tenant, scheme, _day_end(from_date), _day_end(to_date)
                )
            else:
                raise UserError("give either `fromRun` and `toRun`, or `fromDate` and `toDate`")
        return [
            Migration(from_tier=c.from_tier, to_tier=c.to_tier, customer_count=c.customers)
            for c in cells
        ]

    @resolver(
        "Per tier at the start of `since` (rebuilt from the recorded tier changes): how many "
        "of its customers made no purchase from `since` to the end of `until` (UTC days; "
        "default today). NOT_FOUND for an unknown scheme.",
        needs=Permission.read_reports,
    )
    async def churn(
        self,
        info: Info,
        scheme: Annotated[str, arg("Key of the scheme.")],
        since: Annotated[dt.date, arg("The period's first day.")],
        until: Annotated[dt.date | None, arg("The period's last day (default: today).")] = None,
    ) -> list[TierChurn]:
        context = info.context
        last = until or dt.datetime.now(dt.UTC).date()
        async with context.transaction() as connection:
            rows = await analytics.churn_rate(
                connection,
                context.tenant,
                scheme,
                _day_start(since),
                _day_start(last + dt.timedelta(days=1)),
            )
        return [
            TierChurn(
                tier=r.tier,
                customer_count=r.customers,
                churned=r.churned,
                rate=None if r.rate is None else r.rate.quantize(SHARE_STEP),
            )
            for r in rows
        ]

    @resolver(
        "The most common values of a text field (`region`, `gender`, `occupation`, "
        "`industry`) among the customers, with their counts, most common first: what a rule "
        'can compare it with (`region = "east"`). BAD_INPUT for a field that is not text.',
        needs=Permission.read_reports,
    )
    async def text_values(
        self,
        info: Info,
        metric: Annotated[str, arg("The field, as written in rules (`region`).")],
        first: Annotated[int, arg("How many of the most common values.")] = 50,
    ) -> list[TextValue]:
        context = info.context
        page_size(context.settings, "first", first)
        async with context.transaction() as connection:
            found = await analytics.text_values(connection, context.tenant, metric, first)
        return [TextValue(value=value, customer_count=n) for value, n in found]
