"""Graceful shutdown, proven on a real `tierwise serve` process: on SIGTERM an in-flight
request finishes (or, past the shutdown timeout, is cancelled and its transaction rolls
back), the process exits 0 in time, and the database holds no half-written run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.database import create_engine
from service.engine import evaluation
from tests.support import (
    VALUE,
    admin,
    create_and_migrate,
    load,
    memberships_locked,
    order,
    publish,
    run_statuses,
    serve_process,
    tiers_of,
)

EVALUATE = 'mutation Evaluate { evaluateScheme(scheme: "value") { changed customerCount } }'


async def _wait_for_running(engine: AsyncEngine, tenant: str) -> None:
    deadline = time.monotonic() + 60
    while "running" not in await run_statuses(engine, tenant):
        assert time.monotonic() < deadline, "the run never started"
        await asyncio.sleep(0.05)


async def _exit_code(process: subprocess.Popen[bytes], within: float) -> int | None:
    deadline = time.monotonic() + within
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return process.poll()


async def _tenant_with_a_pending_move(engine: AsyncEngine, tenant: str) -> dict[str, str]:
    """c is Normal; a new big order (not yet evaluated) makes the next run move c to VIP."""
    await load(engine, tenant, [order("o1", "c", 200, "10")])
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    await load(engine, tenant, [order("o2", "c", 1, "6000"), order("o3", "c", 2, "1")])
    async with engine.connect() as connection:
        return await tiers_of(connection, tenant, "value")


def _post(base: str, query: str, request_id: str) -> Any:
    return httpx.post(
        f"{base}/graphql",
        json={"query": query},
        headers={"X-Request-ID": request_id},
        timeout=120,
    )


# One process, and uvicorn's workers: SIGTERM reaches the supervising process, which passes
# it to each worker and exits once they all have.
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


@WORKERS
async def test_sigterm_lets_an_in_flight_evaluation_finish_and_exits_0(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path, workers: str
) -> None:
    assert await _tenant_with_a_pending_move(engine, tenant) == {"c": "Normal"}
    log = tmp_path / "serve.log"
    with serve_process(database, tenant, log, shutdown_timeout="30", workers=workers) as (
        process,
        base,
    ):
        async with memberships_locked(engine):
            request = asyncio.create_task(asyncio.to_thread(_post, base, EVALUATE, "shutdown-1"))
            await _wait_for_running(engine, tenant)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert process.poll() is None, "serve exited with a request in flight"
        response = await request
        assert await _exit_code(process, within=30) == 0, log.read_text()

    assert response.status_code == 200
    assert response.json()["data"]["evaluateScheme"] == [{"changed": 1, "customerCount": 1}]
    assert response.headers["x-request-id"] == "shutdown-1"
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"c": "VIP"}
    assert await run_statuses(engine, tenant) == ["succeeded", "succeeded"]
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(
        line["logger"] == "uvicorn.access" and line["request_id"] == "shutdown-1" for line in lines
    ), lines


async def test_past_the_timeout_the_request_is_cancelled_and_rolls_back(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    before = await _tenant_with_a_pending_move(engine, tenant)
    log = tmp_path / "serve.log"
    timeout = 2
    with serve_process(database, tenant, log, shutdown_timeout=str(timeout)) as (process, base):
        async with memberships_locked(engine):
            request = asyncio.create_task(asyncio.to_thread(_post, base, EVALUATE, "shutdown-2"))
            await _wait_for_running(engine, tenant)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            # The lock is still held: the run cannot finish, so the server must give up on it.
            assert await _exit_code(process, within=timeout + 20) == 0, log.read_text()
            assert time.monotonic() - started < timeout + 15
        # uvicorn answers 500 for a request cancelled before its response began (or the
        # connection closes): either way the client knows it has no answer.
        with contextlib.suppress(httpx.TransportError):
            assert (await request).status_code == 500

    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == before  # nothing half-written
    assert await run_statuses(engine, tenant) == ["succeeded", "running"]
    result = await evaluation.evaluate(engine, tenant, "value")
    assert result is not None and result.changed == 1
    assert await run_statuses(engine, tenant) == ["succeeded", "abandoned", "succeeded"]


@pytest.fixture
async def lone_database(server_url: URL) -> AsyncIterator[URL]:
    """A database of its own: the scheduler serves every tenant of its database, one after
    another, and other tests' never-evaluated schemes would queue before this test's."""
    url = server_url.set(database=f"tierwise_shutdown_{secrets.token_hex(4)}")
    await create_and_migrate(url)
    yield url
    await admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@WORKERS
async def test_sigterm_lets_a_scheduled_run_finish(
    lone_database: URL, tmp_path: Path, workers: str
) -> None:
    """With two workers both schedulers find the scheme due: one runs it, the other finds its
    lock held and skips it."""
    database, tenant = lone_database, "shutdown"
    engine = create_engine(database, pool_size=2, max_overflow=2)
    try:
        await _scheduled_run_finishes(database, engine, tenant, tmp_path, workers)
    finally:
        await engine.dispose()


async def _scheduled_run_finishes(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path, workers: str
) -> None:
    await load(engine, tenant, [order("o1", "c", 1, "6000"), order("o2", "c", 2, "1")])
    await publish(engine, tenant, VALUE)  # published, never evaluated: due at once
    log = tmp_path / "serve.log"
    async with memberships_locked(engine) as lock:
        with serve_process(
            database,
            tenant,
            log,
            evaluation_interval="3600",
            shutdown_timeout="30",
            workers=workers,
        ) as (
            process,
            _,
        ):
            await _wait_for_running(engine, tenant)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert process.poll() is None, "serve exited with a scheduled run in flight"
            await lock.rollback()  # the run goes on, and commits
            assert await _exit_code(process, within=30) == 0, log.read_text()
    assert await run_statuses(engine, tenant) == ["succeeded"]
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"c": "VIP"}
