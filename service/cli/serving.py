"""Serving the HTTP API with uvicorn, for `tierwise serve` and `tierwise demo` (imported only
by them: uvicorn, starlette and the API are slow to import)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from service.app import create_app
from service.background import Background
from service.config import Settings


async def serve_app(engine: AsyncEngine, config: Settings) -> None:
    app = create_app(engine, settings=config)
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
