"""The ``tierwise`` command: serve, demo, migrate, import and the commands later layers add.

Every command finds its database the way the service does (TIERWISE_DATABASE_URL, or the
embedded Postgres in TIERWISE_DATA_DIR). Errors print one clear message and exit 1.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service import demo_data, migrate, rollups
from service.app import create_app
from service.cli_rules import rules_app
from service.config import Settings, load_settings
from service.database import create_engine, database_url, plain_url
from service.errors import UserError
from service.ingest import ImportResult, import_file
from service.readers import count_data_rows
from service.records import Kind

app = typer.Typer(
    help="Tierwise: customer tiers from rules, evaluated in Postgres, served over GraphQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(rules_app, name="rules", help="Check and format tier rule files.")
rollups_app = typer.Typer(help="The per-customer order rollups ingest keeps.", no_args_is_help=True)
app.add_typer(rollups_app, name="rollups")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")

TenantOption = Annotated[
    str | None, typer.Option("--tenant", help="Tenant to work in [default: default].")
]
HostOption = Annotated[
    str | None, typer.Option("--host", help="Interface to listen on [env TIERWISE_HOST].")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Port to listen on [env TIERWISE_PORT].")
]

# Below this many rows an import is over before a progress bar would be worth drawing.
PROGRESS_MIN_ROWS = 5_000


def _settings(**overrides: object) -> Settings:
    settings = load_settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if settings.log_level != "debug":
        # Their progress chatter (pg_ctl output, each migration step) is debugging detail here.
        for chatty in ("pgserver", "alembic"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    return settings


def _run_with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` against the configured (or embedded) database, then release everything."""

    async def run(engine: AsyncEngine) -> T:
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with database_url(settings) as url:
        return asyncio.run(run(create_engine(url)))


@app.command("migrate")
def migrate_command(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date (safe to run from several replicas at once)."""
    settings = _settings()

    async def work(engine: AsyncEngine) -> str | None:
        await migrate.upgrade(engine, revision)
        return await migrate.current_revision(engine)

    out.print(f"database schema at revision {_run_with_engine(settings, work)}")


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
    settings = _settings()
    tenant_id = tenant or settings.default_tenant

    async def work(engine: AsyncEngine) -> ImportResult:
        with _progress(file, f"importing {kind}") as advance:
            return await import_file(
                engine, kind, tenant_id, file, skip_bad_to=skip_bad, on_progress=advance
            )

    result = _run_with_engine(settings, work)
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
    settings = _settings(host=host, port=port)
    _run_with_engine(settings, lambda engine: _serve(engine, settings))


async def _serve(engine: AsyncEngine, settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(engine),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
    )
    await uvicorn.Server(config).serve()


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1, help="How many customers to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the generator (same seed, same data).")] = 42,
    host: HostOption = None,
    port: PortOption = None,
    serve_: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after loading.")] = True,
) -> None:
    """Start Postgres (embedded unless configured), migrate, load demo data and serve."""
    settings = _settings(host=host, port=port)
    config = demo_data.DemoConfig(customers=customers, seed=seed)

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
                demo_data.write_csv(rows(config), path, fields)
                with _progress(path, f"loading demo {kind}") as advance:
                    result = await import_file(
                        engine, kind, settings.default_tenant, path, on_progress=advance
                    )
                out.print(f"demo {kind}: {result.summary()}")
        if serve_:
            out.print(
                f"Tierwise demo serving at http://{settings.host}:{settings.port}/ "
                f"(tenant {settings.default_tenant!r}); Ctrl-C stops it."
            )
            await _serve(engine, settings)

    _run_with_engine(settings, work)


@rollups_app.command("check")
def rollups_check(tenant: TenantOption = None) -> None:
    """Compare the rollups with a recomputation from the raw orders; exit 1 on any drift."""
    settings = _settings()
    tenant_id = tenant or settings.default_tenant

    async def work(engine: AsyncEngine) -> int:
        async with engine.connect() as connection:
            return await rollups.drift(connection, tenant_id)

    drifted = _run_with_engine(settings, work)
    out.print(f"{drifted} customers' rollups differ from their orders")
    if drifted:
        raise typer.Exit(1)


@rollups_app.command("rebuild")
def rollups_rebuild(tenant: TenantOption = None) -> None:
    """Recompute every customer's rollup from the raw orders."""
    settings = _settings()
    tenant_id = tenant or settings.default_tenant

    async def work(engine: AsyncEngine) -> None:
        async with engine.begin() as connection:
            await rollups.rebuild(connection, tenant_id)

    _run_with_engine(settings, work)
    out.print(f"rollups of tenant {tenant_id!r} rebuilt")


def _print_error(message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message), highlight=False)


def main() -> None:
    """Entry point: run the CLI; user errors print one message, never a traceback."""
    try:
        app()
    except UserError as error:
        _print_error(str(error))
        sys.exit(1)
    except (OSError, DBAPIError) as error:
        reason = getattr(error, "orig", None) or error
        _print_error(f"database: {reason}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
