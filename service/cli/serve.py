"""`tierwise serve`, `demo` and `migrate`: bring the database up to date and serve the API."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.support import out, progress, run_with_engine, settings

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.access.audit import Actor

# The server (uvicorn, starlette, the GraphQL API), the database and the engine are imported by
# the commands, when they run: every other `tierwise` command starts without them (support).

app = typer.Typer(rich_markup_mode=None)

HostOption = Annotated[
    str | None, typer.Option("--host", help="Interface to listen on [env TIERWISE_HOST].")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Port to listen on [env TIERWISE_PORT].")
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Worker processes, each a whole service on one shared socket (README, "
        '"Workers": one per core) [env TIERWISE_WORKERS, default 1].',
    ),
]


@app.command("migrate")
def migrate_command(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date (safe to run from several replicas at once)."""
    from service.db import distribute, migrate

    config = settings()

    async def work(engine: AsyncEngine) -> tuple[str | None, distribute.Distribution | None]:
        await migrate.upgrade(engine, revision)
        async with engine.connect() as connection:
            distributed = await distribute.is_distributed(connection)
        # On a distributed Citus database, the tables a migration added are distributed too.
        done = await distribute.distribute(engine) if distributed else None
        return await migrate.current_revision(engine), done

    reached, done = run_with_engine(config, work, create=True, needs="connection")
    out.print(f"database schema at revision {reached}")
    if done is not None and (done.distributed or done.referenced):
        out.print(f"distributed on Citus: {', '.join(done.distributed + done.referenced)}")


@app.command("distribute")
def distribute_command(
    shard_count: Annotated[
        int | None,
        typer.Option(help="Shards per table (default: Citus' citus.shard_count, 32)."),
    ] = None,
) -> None:
    """Distribute the schema by tenant on a Citus coordinator (idempotent; see
    docs/operations.md)."""
    from service.db import distribute

    config = settings()

    async def work(engine: AsyncEngine) -> distribute.Distribution:
        return await distribute.distribute(engine, shard_count=shard_count)

    done = run_with_engine(config, work)
    for name in done.distributed:
        out.print(f"distributed by tenant: {name}")
    for name in done.referenced:
        out.print(f"reference table: {name}")
    if done.already:
        out.print(f"already distributed: {', '.join(done.already)}")


@app.command()
def serve(host: HostOption = None, port: PortOption = None, workers: WorkersOption = None) -> None:
    """Serve the HTTP API (the database must exist and be migrated: see `tierwise migrate`)."""
    from service.cli.serving import serve_app, serve_workers

    config = settings(host=host, port=port, workers=workers, log_format="json")
    # An existing database, not checked here: /readyz says while it cannot be reached or needs
    # `tierwise migrate`, so replicas may start before the database does.
    if config.workers == 1:
        run_with_engine(config, lambda engine: serve_app(engine, config), needs="nothing")
        return
    from service.db.database import database_url

    with database_url(config, create=False) as url:
        serve_workers(url, config, log_format="json")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1, help="How many customers to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the generator (same seed, same data).")] = 42,
    host: HostOption = None,
    port: PortOption = None,
    serve_: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after loading.")] = True,
    workers: WorkersOption = None,
) -> None:
    """Start Postgres (embedded unless configured), migrate, load demo data, fit the prediction
    models, publish the seven built-in templates (value, lifecycle, RFM, ABC, declining,
    predicted lifetime value, churn risk) with their strategies, evaluate, serve."""
    from service.access import audit
    from service.cli.keys import demo_access
    from service.cli.serving import serve_app, serve_workers
    from service.data import demo_data
    from service.data.ingest import import_file
    from service.data.kinds import Kind
    from service.db import migrate
    from service.db.database import plain_url, tenant_transaction
    from service.engine import analytics, evaluation, schemes, strategies
    from service.engine.templates import TEMPLATES

    config, access = demo_access(settings(host=host, port=port, workers=workers))
    generated = demo_data.DemoConfig(customers=customers, seed=seed)

    async def work(engine: AsyncEngine) -> None:
        out.print(f"database: {plain_url(engine.url)}")
        await migrate.upgrade(engine)
        await demo_data.set_up_tenant(engine, config.default_tenant, generated)
        with tempfile.TemporaryDirectory(prefix="tierwise-demo-") as folder:
            for kind, rows, fields in (
                (Kind.customers, demo_data.customer_rows, demo_data.CUSTOMER_FIELDS),
                (Kind.orders, demo_data.order_rows, demo_data.ORDER_FIELDS),
                (Kind.events, demo_data.event_rows, demo_data.EVENT_FIELDS),
            ):
                path = Path(folder) / f"{kind}.csv"
                demo_data.write_csv(rows(generated), path, fields)
                with progress(path, f"loading demo {kind}") as advance:
                    result = await import_file(
                        engine, kind, config.default_tenant, path, on_progress=advance
                    )
                out.print(f"demo {kind}: {result.summary()}")
        actor = audit.command_line_actor()
        await _fit_demo_models(engine, config.default_tenant, actor)
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
        out.print(
            f"evaluated the {len(TEMPLATES)} built-in schemes ({durations}):", highlight=False
        )
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
            if config.workers == 1:
                await serve_app(engine, config)

    def serve_with_workers(url: URL) -> None:
        # Out of the loading's event loop, while the (embedded) database is still up.
        if serve_ and config.workers > 1:
            serve_workers(url, config, log_format="text")

    run_with_engine(config, work, create=True, needs="connection", then=serve_with_workers)


async def _fit_demo_models(engine: AsyncEngine, tenant: str, actor: Actor) -> None:
    """Fit the prediction models on the demo's orders (the clv and churn_risk templates read
    them), saying what was fitted, or in a sentence why not."""
    import datetime as dt

    from service.db.database import tenant_transaction
    from service.engine.predictions.tenant import NotEnoughData, fit_tenant

    now = dt.datetime.now(dt.UTC)
    async with tenant_transaction(engine, tenant, batch=True) as connection:
        try:
            model, written = await fit_tenant(connection, tenant, now, actor=actor)
        except NotEnoughData as error:
            out.print(f"no prediction model: {error}", highlight=False, markup=False)
            return
    out.print(
        f"fitted the prediction models on {model.customers:,} customers "
        f"({model.repeat_customers:,} repeat buyers); predictions of {written:,} customers",
        highlight=False,
    )
