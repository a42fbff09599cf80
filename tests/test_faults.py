"""Killing the service during ingest or a run, then restarting: nothing lost, nothing
half-written. Real `tierwise import` and `tierwise evaluate` processes are SIGKILLed while
their transaction is open (held there by a table lock the test owns), then the work is
run again: counts reconcile with the file, rollups with the orders, and memberships with a
full recomputation. (tests/engine/test_run_safety.py kills a run at a chosen point in process.)"""

from __future__ import annotations

import asyncio
import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data import rollups
from service.db.tables import customer_metrics, customers, memberships, orders
from service.engine import evaluation
from tests.support import UNBOUNDED_IDLE, VALUE, day, memberships_locked, publish, run_statuses

ROOT = Path(__file__).resolve().parent.parent
ORDERS = 50_000
CUSTOMERS = 5_000


def _tierwise(database: URL, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TIERWISE_DATABASE_URL": database.set(drivername="postgresql").render_as_string(
            hide_password=False
        ),
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from service.cli import main; main()", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _orders_file(path: Path, seed: int) -> Path:
    generator = random.Random(seed)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["order_id", "customer_id", "ordered_at", "amount"])
        for number in range(ORDERS):
            writer.writerow(
                [
                    f"o{number}",
                    f"c{generator.randrange(CUSTOMERS)}",
                    day(generator.randrange(1, 400)),
                    f"{generator.randrange(1, 300_000) / 100:.2f}",
                ]
            )
    return path


async def _counts(engine: AsyncEngine, tenant: str) -> tuple[int, int, int]:
    """Orders, customers and rollups of ``tenant``."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    select(func.count()).where(orders.c.tenant_id == tenant).scalar_subquery(),
                    select(func.count()).where(customers.c.tenant_id == tenant).scalar_subquery(),
                    select(func.count())
                    .where(customer_metrics.c.tenant_id == tenant)
                    .scalar_subquery(),
                )
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def _wait_until_blocked(engine: AsyncEngine, database: str) -> None:
    """Until another backend's transaction has written something and now waits on a lock."""
    deadline = time.monotonic() + 120
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
        " AND backend_xid IS NOT NULL AND wait_event_type = 'Lock'"
    )
    while True:
        async with engine.connect() as connection:
            if await connection.scalar(query, {"db": database}):
                return
        assert time.monotonic() < deadline, "the process never reached the lock"
        await asyncio.sleep(0.05)


def _kill(process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, process.communicate()[0].decode()
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _finish(process: subprocess.Popen[bytes]) -> str:
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output
    return output


async def _equals_full_recomputation(engine: AsyncEngine, tenant: str) -> None:
    """The current memberships are what a full run computes now: no customer would move."""
    (preview,) = await evaluation.preview(engine, tenant, VALUE)
    assert preview.moves == (), preview.moves
    async with engine.connect() as connection:
        placed = await connection.scalar(
            select(func.count()).where(memberships.c.tenant_id == tenant)
        )
    assert placed == sum(t.customers for t in preview.tiers) > 0


async def test_an_import_killed_halfway_writes_nothing_and_the_rerun_loads_everything(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await publish(engine, tenant, VALUE)
    file = _orders_file(tmp_path / "orders.csv", seed=1)
    assert database.database is not None
    async with engine.connect() as lock:
        # Orders and customers get written; the rollups' write waits on this lock.
        await lock.execute(text(UNBOUNDED_IDLE))
        await lock.execute(text("LOCK TABLE customer_metrics IN EXCLUSIVE MODE"))
        process = _tierwise(database, "import", "orders", str(file), "--tenant", tenant)
        await _wait_until_blocked(engine, database.database)
        _kill(process)
        await lock.rollback()
    assert await _counts(engine, tenant) == (0, 0, 0)  # nothing half-written

    output = _finish(_tierwise(database, "import", "orders", str(file), "--tenant", tenant))
    assert f"{ORDERS} orders inserted" in output
    written = await _counts(engine, tenant)
    assert written[0] == ORDERS
    assert written[1] == written[2] <= CUSTOMERS
    async with engine.connect() as connection:
        assert await rollups.drift(connection, tenant) == 0
    # The import kept tiers current as it went; a full run agrees (value has no ranks).
    await evaluation.evaluate(engine, tenant, "value")
    await _equals_full_recomputation(engine, tenant)


async def test_an_evaluate_killed_mid_run_leaves_the_old_tiers_and_the_rerun_completes(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    assert database.database is not None
    _finish(
        _tierwise(
            database,
            "import",
            "orders",
            str(_orders_file(tmp_path / "a.csv", 2)),
            "--tenant",
            tenant,
        )
    )
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    # Time passes, as far as the tiers know: every order moves 200 days back, so the next
    # run moves many customers (kept out of ingest, which would move them at once).
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE orders SET ordered_at = ordered_at - interval '200 days'"
                " WHERE tenant_id = :t"
            ),
            {"t": tenant},
        )
        await rollups.rebuild(connection, tenant)
    async with engine.connect() as connection:
        before = (
            await connection.execute(
                select(memberships.c.customer_id, memberships.c.tier, memberships.c.since)
                .where(memberships.c.tenant_id == tenant)
                .order_by(memberships.c.customer_id)
            )
        ).all()

    async with memberships_locked(engine) as lock:
        process = _tierwise(database, "evaluate", "--scheme", "value", "--tenant", tenant)
        await _wait_until_blocked(engine, database.database)
        assert await run_statuses(engine, tenant) == ["succeeded", "running"]
        _kill(process)
        await lock.rollback()
    async with engine.connect() as connection:
        after = (
            await connection.execute(
                select(memberships.c.customer_id, memberships.c.tier, memberships.c.since)
                .where(memberships.c.tenant_id == tenant)
                .order_by(memberships.c.customer_id)
            )
        ).all()
    assert after == before  # the killed run changed nothing
    (pending,) = await evaluation.preview(engine, tenant, VALUE)
    assert sum(move.customers for move in pending.moves) > 100  # which it was about to do

    _finish(_tierwise(database, "evaluate", "--scheme", "value", "--tenant", tenant))
    assert await run_statuses(engine, tenant) == ["succeeded", "abandoned", "succeeded"]
    await _equals_full_recomputation(engine, tenant)
