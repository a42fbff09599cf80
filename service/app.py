"""The HTTP service: a Starlette app over one database engine."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from service import console, metrics
from service.api.bounds import RequestBounds
from service.api.export import export_endpoint
from service.api.feed import TransitionFeed
from service.api.http import TierwiseGraphQL
from service.api.observe import RequestObserver, metrics_endpoint
from service.background import Background
from service.config import Settings
from service.db import migrate
from service.engine import scheduler, webhooks

_INDEX = """<!doctype html><meta charset="utf-8"><title>Tierwise</title>
<h1>Tierwise</h1>
<p>The service is running. Analyst console: <a href="/console">/console</a>.
GraphQL API: <a href="/graphql">/graphql</a>.
Health: <a href="/healthz">/healthz</a>, readiness: <a href="/readyz">/readyz</a>.</p>
"""


class _GraphQL(TierwiseGraphQL):
    """The API with its GraphiQL page served from this package's own assets (works offline)."""

    async def render_graphql_ide(self, request: Request) -> Response:
        return console.html_response(console.graphiql_html())


# Young objects a process may allocate before the collector looks at them (Python's default
# is 700). A GraphQL request allocates thousands of short-lived containers (documents, info
# objects, results), nearly all freed by reference counting; at 700 the collector ran several
# young collections per request, and every tenth of every tenth a full one.
GC_YOUNG_THRESHOLD = 10_000


def settle_memory() -> None:
    """Once start-up is done: collect, then freeze what is left (the modules, the schema, the
    SQLAlchemy metadata, compiled statements: some hundreds of thousands of objects that live
    as long as the process) into the collector's permanent generation, which no collection
    traverses again. Without it every full collection walked them all: ~100 ms pauses at 16
    clients, which made the API's p99 (docs/benchmarks.md). Also `GC_YOUNG_THRESHOLD`."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def create_app(engine: AsyncEngine, *, settings: Settings | None = None) -> Starlette:
    """The service over ``engine``, configured by ``settings`` (default: read from the
    environment); with a positive `Settings.evaluation_interval` it also runs scheduled
    evaluations, and with a positive `Settings.webhook_poll_interval` the webhook dispatcher."""
    config = settings or Settings()
    feed = TransitionFeed(engine)
    graphql = _GraphQL(engine, config, feed)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(_INDEX)

    async def healthz(request: Request) -> JSONResponse:
        """The process is up (for liveness probes: says nothing about the database)."""
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        """Ready for traffic: the database answers and its schema is at the code's revision."""
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            revision = await migrate.current_revision(engine)
        except Exception as error:  # any failure to reach the database means "not ready"
            return JSONResponse(
                {"status": "unavailable", "reason": f"database unreachable: {error}"},
                status_code=503,
            )
        head = migrate.head_revision()
        if revision != head:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "reason": f"database schema at {revision}, code expects {head}: "
                    "run `tierwise migrate`",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "schema": revision})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        background = Background(config.shutdown_timeout)
        # The server asks background work to stop as soon as a signal arrives (cli.serve).
        app.state.background = background
        if config.evaluation_interval > 0:
            interval = dt.timedelta(seconds=config.evaluation_interval)
            background.start(
                "scheduler", lambda stopping: scheduler.run_forever(engine, interval, stopping)
            )
        if config.webhook_poll_interval > 0:
            dispatcher = webhooks.Dispatcher(engine, webhooks.DispatchSettings.of(config))
            background.start("webhooks", dispatcher.run)
        settle_memory()
        try:
            yield
        finally:
            await background.stop()
            await feed.close()
            await engine.dispose()

    routes: list[BaseRoute] = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/export", export_endpoint(graphql.gate, engine)),
        *console.routes(),
    ]
    if config.metrics:
        routes.append(Route("/metrics", metrics_endpoint))
    metrics.track_pool(engine)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestObserver, paths=_observed(routes)),
            Middleware(
                RequestBounds,
                max_body_bytes=config.max_request_bytes,
                connections=config.request_connections,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.feed = feed
    return app


def _observed(routes: list[BaseRoute]) -> set[str]:
    """The paths whose requests are counted by path (the rest as one `other`)."""
    return {route.path for route in routes if isinstance(route, Route | WebSocketRoute)}
