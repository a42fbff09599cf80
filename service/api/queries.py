"""The Query root: thin resolvers over the service layer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import strawberry
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl import RuleError, check_condition, compile_condition, parse_condition, parse_rules
from service.access.auth import Permission
from service.api.audit import AuditQuery
from service.api.context import Context, Info
from service.api.errors import bad_input, bad_rule, not_found
from service.api.fields import arg, resolver
from service.api.keys import KeyQuery
from service.api.types import (
    Customer,
    CustomerConnection,
    CustomerEdge,
    Diagnostic,
    Explanation,
    Metric,
    PageInfo,
    RuleCheck,
    RulePreview,
    Scheme,
    SchemePreview,
    Segment,
    Strategy,
    catalog,
    decode_cursor,
    encode_cursor,
    explanation,
)
from service.api.webhooks import WebhookQuery
from service.db.tables import customers, memberships
from service.engine import analytics, evaluation, schemes, strategies
from service.engine.sources import tenant_sources
from service.errors import UserError


def _midnight(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime.combine(day, dt.time(), dt.UTC)


async def _filtered(
    connection: AsyncConnection,
    context: Context,
    scheme: str | None,
    tier: str | None,
    where: str | None,
) -> Select[Any]:
    """The tenant's customers' ids matching the filters (unordered, unpaged)."""
    statement = select(customers.c.id).where(customers.c.tenant_id == context.tenant)
    if tier is not None and scheme is None:
        raise bad_input("`tier` needs `scheme`: tier names belong to a scheme")
    published = await schemes.current(connection, context.tenant) if scheme or where else []
    if scheme is not None:
        found = next((s for s in published if s.key == scheme), None)
        if found is None:
            raise not_found(f"no published scheme {scheme!r}")
        if tier is not None and tier not in found.tiers:
            raise not_found(f"scheme {scheme!r} has no tier {tier!r}")
        members = select(memberships.c.customer_id).where(
            memberships.c.tenant_id == context.tenant, memberships.c.scheme_key == scheme
        )
        if tier is not None:
            members = members.where(memberships.c.tier == tier)
        statement = statement.where(customers.c.id.in_(members))
    if where is not None:
        try:
            condition = check_condition(
                parse_condition(where, "<where>"), "<where>", {s.key: s.tiers for s in published}
            )
        except RuleError as error:
            raise bad_rule(error) from None
        matching = compile_condition(
            condition, tenant_sources(context.tenant), dt.datetime.now(dt.UTC)
        ).subquery("matching")
        statement = statement.where(customers.c.id.in_(select(matching.c.customer_id)))
    return statement


@strawberry.type(description="Reading customers, tiers, segments, strategies and rules.")
class Query(WebhookQuery, AuditQuery, KeyQuery):
    @resolver(
        description="The customer of this id (their id in your systems), or null.",
        needs=Permission.read_customers,
    )
    async def customer(
        self, info: Info, id: Annotated[strawberry.ID, arg("The customer's id in your systems.")]
    ) -> Customer | None:
        row = await info.context.loaders.customer_by_external_id.load(str(id))
        return Customer.of(row) if row is not None else None

    @resolver(
        "Why a customer is in their tier of `scheme` (the customer card's `explain`, for "
        "tools that start from an id). NOT_FOUND for an unknown customer or scheme.",
        needs=Permission.read_customers,
    )
    async def explain(
        self,
        info: Info,
        customer: Annotated[strawberry.ID, arg("The customer's id in your systems.")],
        scheme: Annotated[str, arg("Key of a published scheme.")],
    ) -> Explanation:
        row = await info.context.loaders.customer_by_external_id.load(str(customer))
        if row is None:
            raise not_found(f"no customer {str(customer)!r}")
        return await explanation(info, row.id, scheme)

    @resolver(
        "Customers, in a stable order, a page at a time: optionally those in "
        "`tier` of `scheme`, and those for whom `where` (a rule-language condition, e.g. "
        '`monetary > 1000 and region = "east"`) is true now. `first` is capped by the '
        "server's page size limit.",
        needs=Permission.read_customers,
    )
    async def customers(
        self,
        info: Info,
        scheme: Annotated[str | None, arg("Only customers placed in this scheme.")] = None,
        tier: Annotated[str | None, arg("Only those in this tier of `scheme`.")] = None,
        where: Annotated[
            str | None, arg("A rule-language condition, e.g. `recency > 90 days`.")
        ] = None,
        first: Annotated[
            int | None, arg("Page size (default and cap: the server's limit).")
        ] = None,
        after: Annotated[str | None, arg("`endCursor` of the previous page.")] = None,
    ) -> CustomerConnection:
        context = info.context
        limit = context.settings.max_page_size
        size = limit if first is None else first
        if size < 0:
            raise bad_input("`first` must not be negative")
        size = min(size, limit)
        start = decode_cursor(after) if after is not None else None
        async with context.transaction() as connection:
            ids = (await _filtered(connection, context, scheme, tier, where)).subquery("ids")
            page = select(customers).where(
                customers.c.tenant_id == context.tenant, customers.c.id.in_(select(ids.c.id))
            )
            if start is not None:
                page = page.where(customers.c.id > start)
            rows = (await connection.execute(page.order_by(customers.c.id).limit(size + 1))).all()
        edges = [
            CustomerEdge(cursor=encode_cursor(row.id), node=Customer.of(row)) for row in rows[:size]
        ]
        return CustomerConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > size,
                has_previous_page=start is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            counted=select(func.count()).select_from(ids),
        )

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
        description="The published schemes, dependencies first.", needs=Permission.read_reports
    )
    async def schemes(self, info: Info) -> list[Scheme]:
        context = info.context
        async with context.transaction() as connection:
            found = await schemes.current(connection, context.tenant)
        return [Scheme.of(scheme) for scheme in found]

    @resolver(
        description="Active strategies, optionally of one scheme and tier.",
        needs=Permission.read_reports,
    )
    async def strategies(
        self,
        info: Info,
        scheme: Annotated[str | None, arg("Only this scheme's.")] = None,
        tier: Annotated[str | None, arg("Only this tier's.")] = None,
    ) -> list[Strategy]:
        context = info.context
        async with context.transaction() as connection:
            found = await strategies.listed(connection, context.tenant, scheme=scheme, tier=tier)
        return [Strategy.of(s) for s in found]

    @resolver(
        description="Every metric the rule language knows (its catalog).",
        needs=Permission.read_reports,
    )
    def metrics(self) -> list[Metric]:
        return catalog()

    @resolver(
        "Check rule text against the published schemes: errors and warnings "
        "with line and column. Nothing is written.",
        needs=Permission.check_rules,
    )
    async def check_rules(
        self, info: Info, source: Annotated[str, arg("Rule text, as in a .rules file.")]
    ) -> RuleCheck:
        context = info.context
        try:
            parsed = parse_rules(source)
            async with context.transaction() as connection:
                result = await schemes.check_against_published(connection, context.tenant, parsed)
        except RuleError as error:
            return RuleCheck(ok=False, diagnostics=[Diagnostic.of(d) for d in error.diagnostics])
        return RuleCheck(ok=True, diagnostics=[Diagnostic.of(d) for d in result.warnings])

    @resolver(
        "What publishing rule text would do: customers and revenue per tier and "
        "who would move, evaluated now or at the start of `asOf` (a backtest). Nothing is "
        "written. Bad rules give a BAD_RULE error.",
        needs=Permission.check_rules,
    )
    async def preview_rules(
        self,
        info: Info,
        source: Annotated[str, arg("Rule text, as in a .rules file.")],
        as_of: Annotated[
            dt.date | None, arg("Evaluate on the data before this day (a backtest); default now.")
        ] = None,
    ) -> RulePreview:
        context = info.context
        try:
            previews = await evaluation.preview(
                context.engine, context.tenant, source, as_of=_midnight(as_of)
            )
        except RuleError as error:
            raise bad_rule(error) from None
        except UserError as error:
            raise bad_input(str(error)) from None
        return RulePreview(schemes=[SchemePreview.of(p) for p in previews])
