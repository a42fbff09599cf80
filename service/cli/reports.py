"""`tierwise evaluate` and `tierwise segments`: runs and the per-tier report."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.support import (
    AsOfOption,
    FormatOption,
    OutputFormat,
    TenantOption,
    backtest_note,
    out,
    parse_as_of,
    print_exact_json,
    run_with_engine,
    settings,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.engine import analytics, evaluation

# The database and the engine are imported by the commands, when they run (see support).

app = typer.Typer()


@app.command()
def evaluate(
    scheme: Annotated[
        str | None, typer.Option("--scheme", help="Only this scheme (and those that use it).")
    ] = None,
    as_of: AsOfOption = None,
    tenant: TenantOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """Evaluate published schemes now (for cron), or backtest them --as-of a past date.

    A run of now makes its result current and records every tier change; a backtest only
    reports what the tiers were then: of the customers who existed by then, with `in tier`
    read from the referenced schemes as of then. Runs of one scheme never overlap, across
    processes.
    """
    from service.db.database import tenant_transaction
    from service.engine import analytics, evaluation, schemes

    config = settings()
    tenant_id = tenant or config.default_tenant
    when = parse_as_of(as_of)

    async def work(engine: AsyncEngine) -> list[analytics.SegmentRow]:
        results = await evaluation.evaluate_all(
            engine, tenant_id, keys=[scheme] if scheme else None, as_of=when, trigger="cli"
        )
        if scheme and not results:
            raise schemes.unpublished(scheme, tenant_id)
        if when is None:
            async with tenant_transaction(engine, tenant_id) as connection:
                keys = {result.scheme for result in results}
                rows = await analytics.segment_report(connection, tenant_id, None)
                return [row for row in rows if row.scheme in keys]
        return [row for result in results for row in run_rows(result)]

    rows = run_with_engine(config, work)
    if when is not None and output is OutputFormat.text:
        out.print(backtest_note(when), highlight=False)
    _print_segments(rows, output)


def run_rows(result: evaluation.RunResult) -> list[analytics.SegmentRow]:
    """A backtest's tiers as report rows; shares are of the customers the run placed."""
    from service.engine import analytics

    customers = sum(t.customers for t in result.tiers)
    revenue = sum((t.revenue for t in result.tiers), start=Decimal(0))
    return [
        analytics.SegmentRow(
            scheme=result.scheme,
            tier=t.tier,
            customers=t.customers,
            customer_share=analytics.share(t.customers, customers),
            revenue=t.revenue,
            average_revenue=t.revenue / t.customers if t.customers else None,
            revenue_share=analytics.share(t.revenue, revenue),
        )
        for t in result.tiers
    ]


@app.command()
def segments(
    scheme: Annotated[str | None, typer.Option("--scheme", help="Only this scheme.")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="Also average this metric per tier (repeatable)."),
    ] = None,
    tenant: TenantOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """Customers, shares and revenue per tier of the current memberships."""
    from service.db.database import tenant_transaction
    from service.engine import analytics

    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> list[analytics.SegmentRow]:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await analytics.segment_report(connection, tenant_id, scheme, metric or ())

    _print_segments(run_with_engine(config, work), output)


def _print_segments(rows: list[analytics.SegmentRow], output: OutputFormat) -> None:
    from service.engine import analytics

    if output is OutputFormat.json:
        print_exact_json(analytics.segment_dicts(rows))
    else:
        out.print(analytics.segment_table(rows), highlight=False, markup=False)
