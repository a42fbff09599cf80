"""Segments: customers, shares and revenue per tier over the current memberships
(`service.engine.analytics`), with each tier's active strategies."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import strawberry

from service.access.auth import Permission
from service.api.context import Info
from service.api.fields import arg, resolver
from service.api.strategies import Strategy
from service.engine import analytics

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
        return [Strategy.of(s) for s in found if s.active]

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
