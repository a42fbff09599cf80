from __future__ import annotations

import gc

import httpx
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import GC_YOUNG_THRESHOLD, create_app, settle_memory
from service.db import migrate
from service.db.database import create_engine


async def _get(engine: AsyncEngine, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        return await client.get(path)


async def test_healthz_says_the_process_is_up(engine: AsyncEngine) -> None:
    response = await _get(engine, "/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_checks_database_and_schema(engine: AsyncEngine) -> None:
    response = await _get(engine, "/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "schema": migrate.head_revision()}


async def test_readyz_refuses_when_the_database_is_unreachable() -> None:
    engine = create_engine(URL.create("postgresql+asyncpg", "nobody", host="127.0.0.1", port=1))
    response = await _get(engine, "/readyz")
    assert response.status_code == 503
    assert response.json()["reason"].startswith("database unreachable")
    await engine.dispose()


def test_start_up_freezes_what_lives_as_long_as_the_process() -> None:
    """What start-up leaves behind is out of the collector's reach (no full collection walks
    it again), and young collections run less often."""
    threshold = gc.get_threshold()
    try:
        settle_memory()
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
