"""Serving the HTTP API with uvicorn, for `tierwise serve` and `tierwise demo` (imported only
by them: uvicorn, starlette and the API are slow to import).

One worker (the default) serves in the command's own process and event loop. Several
(`--workers`, TIERWISE_WORKERS) are uvicorn's own: the command's process binds the socket and
supervises (uvicorn.supervisors.Multiprocess: restarts a worker that dies, forwards SIGTERM
and SIGINT, waits for every worker to finish), and each worker is a spawned process that
builds the app from `worker_app` (an app factory) and accepts on the shared socket. Each
worker is a whole service: its own pool, scheduler, webhook dispatcher, subscription
listener, rate limits and tenant budgets, exactly as a replica (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from pydantic import SecretStr
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from service import logs
from service.app import create_app
from service.background import Background
from service.config import LogFormat, Settings
from service.db.database import DatabaseLimits, async_url, create_engine, plain_url
from service.errors import UserError

# The app factory the workers import, and where the command leaves them its settings (the
# resolved database URL, the command line's options, a demo's generated JWT secret): spawned
# processes inherit the environment, not the command's objects. Not a `TIERWISE_` setting.
WORKER_APP = "service.cli.serving:worker_app"
_WORKER_SETTINGS = "_TIERWISE_WORKER_SETTINGS"


async def serve_app(engine: AsyncEngine, config: Settings) -> None:
    """Serve in this process and event loop (one worker)."""
    app = create_app(engine, settings=config)
    server_config = _uvicorn_config(app, config)
    await _GracefulServer(server_config, app).serve()


def serve_workers(url: URL, config: Settings, log_format: LogFormat) -> None:
    """Serve with ``config.workers`` uvicorn worker processes over the database at ``url``,
    until SIGTERM or SIGINT (each worker shuts down gracefully); outside any event loop.
    The workers log in ``log_format`` unless TIERWISE_LOG_FORMAT says."""
    resolved = config.model_copy(
        update={"database_url": plain_url(url), "log_format": config.log_format or log_format}
    )
    server_config = _uvicorn_config(WORKER_APP, resolved)
    os.environ[_WORKER_SETTINGS] = _dumped(resolved)
    socket = server_config.bind_socket()
    supervisor = Multiprocess(server_config, sockets=[socket])  # handles SIGTERM and SIGINT
    try:
        supervisor.run()
    finally:
        socket.close()
        del os.environ[_WORKER_SETTINGS]
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise UserError("a worker failed to start (its log says why): stopped serving")


def worker_app() -> Starlette:
    """The app of one worker process (uvicorn calls it in the worker, from its Server.serve:
    after uvicorn has installed its signal handlers, before the lifespan starts)."""
    config = Settings.model_validate(json.loads(os.environ[_WORKER_SETTINGS]))
    logs.configure(config.log_level, config.log_format or "json")
    assert config.database_url is not None
    engine = create_engine(
        async_url(config.database_url),
        pre_ping=config.database_pre_ping,
        limits=DatabaseLimits.of(config),
    )
    app = create_app(engine, settings=config)  # its lifespan disposes of the engine
    _stop_background_on_signals(app)
    return app


def _uvicorn_config(app: Starlette | str, config: Settings) -> uvicorn.Config:
    """uvicorn's configuration: ``app`` itself (one worker) or the workers' app factory."""
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=1 if isinstance(app, Starlette) else config.workers,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        log_config=None,  # uvicorn's records go through our handler (service.logs)
        lifespan="on",
        timeout_graceful_shutdown=config.shutdown_timeout,
    )


def _dumped(config: Settings) -> str:
    """``config`` as JSON, secrets included (for the workers: an environment variable of this
    process and its children, readable by the user running them, who set them)."""
    values = {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in config.model_dump().items()
    }
    return json.dumps(values, default=str)


def _stop_background_on_signals(app: Starlette) -> None:
    """In a worker, as `_GracefulServer` does in one process: background work (a scheduled
    evaluation) is asked to stop when SIGTERM or SIGINT arrives, on the same clock as the
    requests in flight, not only once they have finished. uvicorn's handler still runs first
    (and restores the original handlers when the server ends)."""

    def chain(number: int) -> None:
        handler = signal.getsignal(number)
        if not callable(handler):
            return

        def handle(sig: int, frame: FrameType | None) -> None:
            handler(sig, frame)
            background: Background | None = getattr(app.state, "background", None)
            if background is not None:
                background.request_stop()

        signal.signal(number, handle)

    chain(signal.SIGTERM)
    chain(signal.SIGINT)


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
