"""`tierwise import`, `delete` and `rollups`: customer data in and out, and the rollups kept
from it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.support import TenantOption, out, progress, run_with_engine, settings
from service.data.kinds import Kind
from service.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.data.ingest import ImportResult
    from service.engine import deletion

# The database, ingest and the engine are imported by the commands, when they run (see support).

app = typer.Typer(rich_markup_mode=None)
rollups_app = typer.Typer(
    rich_markup_mode=None,
    help="The per-customer order rollups ingest keeps.",
    no_args_is_help=True,
)
app.add_typer(rollups_app, name="rollups")


@app.command("import")
def import_(
    kind: Annotated[Kind, typer.Argument(help="What the file holds.")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A .csv or .jsonl file.")
    ],
    tenant: TenantOption = None,
    skip_bad: Annotated[
        Path | None,
        typer.Option(
            "--skip-bad",
            metavar="FILE",
            help="Import the good rows and write the bad ones, with their errors, to FILE.",
        ),
    ] = None,
) -> None:
    """Import customers, orders, events or exchange rates from CSV (with a header) or JSON Lines.

    Importing the same file again changes nothing. A file with a bad row is rejected whole,
    unless --skip-bad is given. Rates (currency,date,rate) convert orders in other currencies
    to the tenant's reporting currency (`tierwise currency`); importing them converts the
    stored orders they apply to again.
    """
    from service.data.ingest import import_file, import_rates
    from service.engine import evaluation

    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> ImportResult:
        if kind is Kind.rates:
            return await import_rates(
                engine,
                tenant_id,
                file,
                skip_bad_to=skip_bad,
                after_load=evaluation.refresh_affected,
            )
        with progress(file, f"importing {kind}") as advance:
            return await import_file(
                engine,
                kind,
                tenant_id,
                file,
                skip_bad_to=skip_bad,
                on_progress=advance,
                after_load=evaluation.refresh_affected,
            )

    result = run_with_engine(config, work)
    out.print(f"{file}: {result.summary()}")
    if result.rejected and skip_bad:
        out.print(f"bad rows written to {skip_bad}")


@app.command("delete")
def delete(
    kind: Annotated[Kind, typer.Argument(help="What the file's ids name.")],
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="A .csv or .jsonl file of ids, as for import."
        ),
    ],
    tenant: TenantOption = None,
) -> None:
    """Delete orders or events, or erase customers, by the ids in FILE.

    The file names them as an import does (customer_id, order_id or event_id; other fields an
    import knows are ignored, so an import's file undoes it). Deleting orders or events
    updates the rollups and tiers at once, recording each change. Erasing a customer removes
    their profile, orders, events, predictions, tiers, history and webhook payloads; the
    audit log keeps that it happened, by whom and when, without the customer's id in clear.
    A bad row rejects the whole file; ids that name nothing are counted, not refused.
    """
    from service.access import audit
    from service.data.readers import read_ids
    from service.engine import deletion

    if kind is Kind.rates:
        raise UserError("rates are replaced by importing them again, not deleted")
    config = settings()
    tenant_id = tenant or config.default_tenant
    ids = read_ids(file, kind)

    async def work(engine: AsyncEngine) -> deletion.Deletion:
        return await deletion.delete(engine, tenant_id, kind, ids, actor=audit.command_line_actor())

    out.print(f"{file}: {run_with_engine(config, work).summary()}", highlight=False)


@app.command("currency")
def currency(
    code: Annotated[
        str | None, typer.Argument(help="An ISO 4217 code (EUR, USD, CNY, ...) to set.")
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Show the tenant's reporting currency, or set it (before any order or rate is stored).

    Every amount is reported in it: orders in other currencies are converted when imported,
    at the rates of `tierwise import rates`. A new tenant's is EUR.
    """
    from service.data import rates

    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> str:
        if code is None:
            return await rates.reporting_currency(engine, tenant_id)
        return await rates.set_reporting_currency(engine, tenant_id, code)

    out.print(f"tenant {tenant_id}: reporting currency {run_with_engine(config, work)}")


@rollups_app.command("check")
def rollups_check(tenant: TenantOption = None) -> None:
    """Compare the rollups with a recomputation from the raw orders; exit 1 on any drift."""
    from service.data import rollups
    from service.db.database import tenant_transaction

    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> int:
        async with tenant_transaction(engine, tenant_id, batch=True) as connection:
            return await rollups.drift(connection, tenant_id)

    drifted = run_with_engine(config, work)
    out.print(f"{drifted} customers' rollups differ from their orders")
    if drifted:
        raise typer.Exit(1)


@rollups_app.command("rebuild")
def rollups_rebuild(tenant: TenantOption = None) -> None:
    """Recompute every customer's rollup from the raw orders."""
    from service.data import rollups
    from service.db.database import tenant_transaction

    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> None:
        async with tenant_transaction(engine, tenant_id, batch=True) as connection:
            await rollups.rebuild(connection, tenant_id)

    run_with_engine(config, work)
    out.print(f"rollups of tenant {tenant_id!r} rebuilt")
