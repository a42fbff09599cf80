"""The ``tierwise`` command: serve, demo, migrate, import and the commands later layers add.

Every command finds its database the way the service does (TIERWISE_DATABASE_URL, or the
embedded Postgres in TIERWISE_DATA_DIR). Errors print one clear message and exit 1.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from service import analytics, audit, demo_data, evaluation, migrate, rollups, schemes, strategies
from service.app import create_app
from service.background import Background
from service.cli_keys import demo_access, keys_app
from service.cli_rules import rules_app
from service.cli_support import (
    AsOfOption,
    FormatOption,
    OutputFormat,
    TenantOption,
    err,
    out,
    parse_as_of,
    print_error,
    run_with_engine,
    settings,
)
from service.config import Settings
from service.database import plain_url, tenant_transaction
from service.errors import UserError
from service.ingest import ImportResult, import_file
from service.readers import count_data_rows
from service.records import Kind
from service.templates import TEMPLATES

app = typer.Typer(
    help="Tierwise: customer tiers from rules, evaluated in Postgres, served over GraphQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(rules_app, name="rules", help="Check and format tier rule files.")
app.add_typer(keys_app, name="keys")
rollups_app = typer.Typer(help="The per-customer order rollups ingest keeps.", no_args_is_help=True)
app.add_typer(rollups_app, name="rollups")

HostOption = Annotated[
    str | None, typer.Option("--host", help="Interface to listen on [env TIERWISE_HOST].")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Port to listen on [env TIERWISE_PORT].")
]

# Below this many rows an import is over before a progress bar would be worth drawing.
PROGRESS_MIN_ROWS = 5_000


@app.command("migrate")
def migrate_command(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date (safe to run from several replicas at once)."""
    config = settings()

    async def work(engine: AsyncEngine) -> str | None:
        await migrate.upgrade(engine, revision)
        return await migrate.current_revision(engine)

    out.print(f"database schema at revision {run_with_engine(config, work)}")


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
    """Import customers, orders or events from CSV (with a header) or JSON Lines.

    Importing the same file again changes nothing. A file with a bad row is rejected whole,
    unless --skip-bad is given.
    """
    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> ImportResult:
        with _progress(file, f"importing {kind}") as advance:
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


@contextmanager
def _progress(file: Path, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal for big files; nothing otherwise."""
    if not err.is_terminal:
        yield None
        return
    total = count_data_rows(file)
    if total < PROGRESS_MIN_ROWS:
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda rows: progress.advance(task, rows)


@app.command()
def serve(host: HostOption = None, port: PortOption = None) -> None:
    """Serve the HTTP API (the database must be migrated: see `tierwise migrate`)."""
    config = settings(host=host, port=port, log_format="json")
    run_with_engine(config, lambda engine: _serve(engine, config))


async def _serve(engine: AsyncEngine, config: Settings) -> None:
    app = create_app(engine, evaluation_interval=config.evaluation_interval, settings=config)
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        log_config=None,  # uvicorn's records go through our handler (service.logs)
        lifespan="on",
        timeout_graceful_shutdown=config.shutdown_timeout,
    )
    await _GracefulServer(server_config, app).serve()


class _GracefulServer(uvicorn.Server):
    """A server that shuts down gracefully on SIGTERM or SIGINT, then returns.

    It stops accepting connections, lets in-flight requests finish (cancelled past the
    shutdown timeout: their transactions roll back), and asks background work (a scheduled
    evaluation) to stop at the same moment, on the same clock. uvicorn re-raises the signal
    after shutdown, which would tear through the caller's cleanup (closing the pool, stopping
    the embedded Postgres) with tracebacks: this server returns instead."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        background: Background | None = getattr(self.app.state, "background", None)
        if background is not None:
            background.request_stop()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1, help="How many customers to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the generator (same seed, same data).")] = 42,
    host: HostOption = None,
    port: PortOption = None,
    serve_: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after loading.")] = True,
) -> None:
    """Start Postgres (embedded unless configured), migrate, load demo data, publish the
    built-in templates (value, lifecycle, RFM, ABC) with their strategies, evaluate, serve."""
    config, access = demo_access(settings(host=host, port=port))
    generated = demo_data.DemoConfig(customers=customers, seed=seed)

    async def work(engine: AsyncEngine) -> None:
        out.print(f"database: {plain_url(engine.url)}")
        await migrate.upgrade(engine)
        with tempfile.TemporaryDirectory(prefix="tierwise-demo-") as folder:
            for kind, rows, fields in (
                (Kind.customers, demo_data.customer_rows, demo_data.CUSTOMER_FIELDS),
                (Kind.orders, demo_data.order_rows, demo_data.ORDER_FIELDS),
                (Kind.events, demo_data.event_rows, demo_data.EVENT_FIELDS),
            ):
                path = Path(folder) / f"{kind}.csv"
                demo_data.write_csv(rows(generated), path, fields)
                with _progress(path, f"loading demo {kind}") as advance:
                    result = await import_file(
                        engine, kind, config.default_tenant, path, on_progress=advance
                    )
                out.print(f"demo {kind}: {result.summary()}")
        actor = audit.command_line_actor()
        for template in TEMPLATES.values():
            async with tenant_transaction(engine, config.default_tenant) as connection:
                await schemes.publish(
                    connection,
                    config.default_tenant,
                    template.source,
                    file=template.file,
                    actor=actor,
                )
                await strategies.install_template(
                    connection, config.default_tenant, template, actor=actor
                )
        runs = await evaluation.evaluate_all(engine, config.default_tenant, trigger="demo")
        async with tenant_transaction(engine, config.default_tenant) as connection:
            report = await analytics.segment_report(connection, config.default_tenant, None)
            installed = await strategies.listed(connection, config.default_tenant)
        durations = ", ".join(f"{run.scheme} {run.duration_ms} ms" for run in runs)
        out.print(f"evaluated the four built-in schemes ({durations}):", highlight=False)
        out.print(analytics.segment_table(report), highlight=False, markup=False)
        out.print(
            f"{len(installed)} strategies attached to their tiers "
            "(`tierwise rules templates` shows the rules)",
            highlight=False,
        )
        if serve_:
            out.print(
                f"Tierwise demo serving at http://{config.host}:{config.port}/ "
                f"(tenant {config.default_tenant!r}); Ctrl-C stops it."
            )
            for line in access:
                out.print(line, highlight=False, markup=False)
            await _serve(engine, config)

    run_with_engine(config, work)


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
    reports what the tiers were then. Runs of one scheme never overlap, across processes.
    """
    config = settings()
    tenant_id = tenant or config.default_tenant
    when = parse_as_of(as_of)

    async def work(engine: AsyncEngine) -> list[analytics.SegmentRow]:
        results = await evaluation.evaluate_all(
            engine, tenant_id, keys=[scheme] if scheme else None, as_of=when, trigger="cli"
        )
        if scheme and not results:
            raise UserError(f"no published scheme {scheme!r} in tenant {tenant_id!r}")
        if when is None:
            async with tenant_transaction(engine, tenant_id) as connection:
                keys = {result.scheme for result in results}
                rows = await analytics.segment_report(connection, tenant_id, None)
                return [row for row in rows if row.scheme in keys]
        return [row for result in results for row in run_rows(result)]

    _print_segments(run_with_engine(config, work), output)


def run_rows(result: evaluation.RunResult) -> list[analytics.SegmentRow]:
    """A backtest's tiers as report rows; shares are of the customers the run placed."""
    customers = sum(t.customers for t in result.tiers)
    revenue = sum((t.revenue for t in result.tiers), start=Decimal(0))
    return [
        analytics.SegmentRow(
            scheme=result.scheme,
            tier=t.tier,
            customers=t.customers,
            customer_share=t.customers / customers if customers else 0.0,
            revenue=t.revenue,
            average_revenue=t.revenue / t.customers if t.customers else None,
            revenue_share=float(t.revenue / revenue) if revenue else 0.0,
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
    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> list[analytics.SegmentRow]:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await analytics.segment_report(connection, tenant_id, scheme, metric or ())

    rows = run_with_engine(config, work)
    if scheme and not rows:
        raise UserError(f"no published scheme {scheme!r} in tenant {tenant_id!r}")
    _print_segments(rows, output)


def _print_segments(rows: list[analytics.SegmentRow], output: OutputFormat) -> None:
    if output is OutputFormat.json:
        out.print_json(json.dumps(analytics.segment_dicts(rows), ensure_ascii=False))
    else:
        out.print(analytics.segment_table(rows), highlight=False, markup=False)


@rollups_app.command("check")
def rollups_check(tenant: TenantOption = None) -> None:
    """Compare the rollups with a recomputation from the raw orders; exit 1 on any drift."""
    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> int:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await rollups.drift(connection, tenant_id)

    drifted = run_with_engine(config, work)
    out.print(f"{drifted} customers' rollups differ from their orders")
    if drifted:
        raise typer.Exit(1)


@rollups_app.command("rebuild")
def rollups_rebuild(tenant: TenantOption = None) -> None:
    """Recompute every customer's rollup from the raw orders."""
    config = settings()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> None:
        async with tenant_transaction(engine, tenant_id) as connection:
            await rollups.rebuild(connection, tenant_id)

    run_with_engine(config, work)
    out.print(f"rollups of tenant {tenant_id!r} rebuilt")


def main() -> None:
    """Entry point: run the CLI; user errors print one message, never a traceback."""
    try:
        app()
    except UserError as error:
        print_error(str(error))
        sys.exit(1)

    except (OSError, DBAPIError) as error:
        reason = getattr(error, "orig", None) or error
        print_error(f"database: {reason}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
