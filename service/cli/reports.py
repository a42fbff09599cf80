"""`tierwise evaluate` and `tierwise segments`: runs and the per-tier report."""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.support import (
    AsOfOption,
    FormatOption,
    OutputFormat,
    TenantOption,
    backtest_note,
    err,
    out,
    parse_as_of,
    print_exact_json,
    run_with_engine,
    settings,
)
from service.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.engine import analytics, evaluation

# The database and the engine are imported by the commands, when they run (see support).

app = typer.Typer(rich_markup_mode=None)


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


@app.command()
def export(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="The CSV file to write (replaced if it exists); - for stdout."
        ),
    ],
    scheme: Annotated[
        str | None, typer.Option("--scheme", help="Customers placed in this scheme.")
    ] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="Only this tier of --scheme.")] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where", help="Only customers for whom this condition holds now (rule language)."
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="A column of this metric, as written in rules (repeatable)."),
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Write every member of a tier (or of a --where) to a CSV file, with chosen metrics.

    One line per customer in the order of their ids: `customer_id`, then one column per
    --metric (exact decimals, ISO 8601 times, empty for no value). Streamed in batches, so
    any size of tier is exported; the file appears only once it is complete.
    """
    from dsl.errors import RuleError
    from service.engine import members

    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> int:
        try:
            prepared = await members.prepare_export(
                engine, tenant_id, scheme=scheme, tier=tier, where=where, metrics=metric or ()
            )
        except RuleError as error:
            raise UserError(str(error)) from None
        if str(file) == "-":
            return await prepared.write(sys.stdout)
        partial = file.with_name(f".{file.name}.part")
        try:
            with partial.open("w", encoding="utf-8", newline="") as stream:
                written = await prepared.write(stream)
            os.replace(partial, file)
        finally:
            partial.unlink(missing_ok=True)
        return written

    written = run_with_engine(config, work)
    if str(file) != "-":
        err.print(f"{written:,} customers written to {file}", highlight=False, markup=False)
