"""What many tests share: orders and loads, publishing, reading tiers back, running the CLI,
databases of their own. Test modules import from here, never from each other."""

from __future__ import annotations

import csv
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service.data.ingest import import_file, import_rows
from service.data.records import Kind
from service.db import migrate
from service.db.database import create_engine, plain_url
from service.db.tables import customers, evaluation_runs, memberships, transitions
from service.engine import schemes

ROOT = Path(__file__).resolve().parent.parent
# For a test's own transaction that holds a lock while it waits for others: the engine's
# sessions would end it after TIERWISE_IDLE_IN_TRANSACTION_TIMEOUT.
UNBOUNDED_IDLE = "SET LOCAL idle_in_transaction_session_timeout = 0"
NOW = dt.datetime.now(dt.UTC)
VALUE = """
scheme value "Customer value" {
  tier VIP    when monetary(365 days) > 5000 and frequency(365 days) >= 2
  tier Active when recency <= 90 days
  tier Normal otherwise
}
"""


CDNOW = Path(__file__).parent / "engine" / "predictions" / "cdnow"
"""The CDNOW sample and the summaries the BG/NBD and Gamma-Gamma papers fitted (README there)."""


def cdnow_orders_csv(path: Path) -> Path:
    """``CDNOW_sample.txt`` written to ``path`` as the orders CSV `tierwise import` takes: one
    order per line of the sample (its line number for an id), the customer's id, the day and
    the amount in USD; the second id and the number of CDs are left out."""
    with (CDNOW / "CDNOW_sample.txt").open() as sample, path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["order_id", "customer_id", "ordered_at", "amount"])
        for number, line in enumerate(sample, 1):
            customer, _, day, _, amount = line.split()
            writer.writerow(
                [f"cdnow-{number}", customer, f"{day[:4]}-{day[4:6]}-{day[6:]}", amount]
            )
    return path


async def load_cdnow(engine: AsyncEngine, tenant: str, directory: Path) -> None:
    """Import the CDNOW sample into ``tenant`` as its orders (6,919 of 2,357 customers)."""
    await import_file(engine, Kind.orders, tenant, cdnow_orders_csv(directory / "cdnow.csv"))


def day(days_ago: int) -> str:
    return (NOW - dt.timedelta(days=days_ago)).isoformat()


def order(order_id: str, customer: str, days_ago: int, amount: str) -> dict[str, str]:
    return {
        "order_id": order_id,
        "customer_id": customer,
        "ordered_at": day(days_ago),
        "amount": amount,
    }


async def load(engine: AsyncEngine, tenant: str, rows: list[dict[str, str]], **kw: Any) -> None:
    await import_rows(engine, Kind.orders, tenant, enumerate(rows, 2), source="test", **kw)


async def tiers_of(connection: AsyncConnection, tenant: str, scheme: str) -> dict[str, str]:
    rows = await connection.execute(
        select(customers.c.external_id, memberships.c.tier)
        .join(
            customers,
            (customers.c.tenant_id == memberships.c.tenant_id)
            & (customers.c.id == memberships.c.customer_id),
        )
        .where(memberships.c.tenant_id == tenant, memberships.c.scheme_key == scheme)
    )
    return {customer: tier for customer, tier in rows}


async def moves(connection: AsyncConnection, tenant: str) -> list[tuple[Any, ...]]:
    rows = await connection.execute(
        select(
            customers.c.external_id,
            transitions.c.from_tier,
            transitions.c.to_tier,
            transitions.c.trigger,
            transitions.c.run_id.is_not(None),
        )
        .join(
            customers,
            (customers.c.tenant_id == transitions.c.tenant_id)
            & (customers.c.id == transitions.c.customer_id),
        )
        .where(transitions.c.tenant_id == tenant)
        .order_by(transitions.c.id)
    )
    return [tuple(row) for row in rows]


async def publish(engine: AsyncEngine, tenant: str, source: str) -> None:
    async with engine.begin() as connection:
        await schemes.publish(connection, tenant, source)


def tierwise(
    database: URL | str | None, *args: str, timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, against ``database`` (a URL, or any text to try; None:
    none configured, so the embedded Postgres of ``cwd``)."""
    env = {k: v for k, v in os.environ.items() if k not in _DATABASE_SETTINGS}
    if database is not None:
        url = database if isinstance(database, str) else plain_url(database)
        env["TIERWISE_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


_DATABASE_SETTINGS = {"TIERWISE_DATABASE_URL", "TIERWISE_DATA_DIR"}


async def run_statuses(engine: AsyncEngine, tenant: str) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(evaluation_runs.c.status)
            .where(evaluation_runs.c.tenant_id == tenant)
            .order_by(evaluation_runs.c.id)
        )
        return list(rows.scalars())


async def admin(server: URL, statement: str) -> None:
    engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def create_and_migrate(url: URL) -> None:
    await admin(url, f'CREATE DATABASE "{url.database}"')
    engine = create_engine(url, pool_size=1, max_overflow=1)
    await migrate.upgrade(engine)
    await engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve_process(
    database: URL, tenant: str, log: Path, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`tierwise serve` on a free loopback port in ``tenant`` (no authentication, no
    scheduler unless asked); yields the process and its base URL once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TIERWISE_DATABASE_URL": database.set(drivername="postgresql").render_as_string(
            hide_password=False
        ),
        "TIERWISE_PORT": str(port),
        "TIERWISE_DEFAULT_TENANT": tenant,
        "TIERWISE_AUTH_REQUIRED": "false",
        "TIERWISE_EVALUATION_INTERVAL": "0",
        "TIERWISE_WEBHOOK_POLL_INTERVAL": "0",
        "TIERWISE_LOG_FORMAT": "json",
        **{f"TIERWISE_{key.upper()}": value for key, value in settings.items()},
    }
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", "from service.cli import main; main()", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve never answered /healthz"
            time.sleep(0.1)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@asynccontextmanager
async def memberships_locked(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Hold a lock that stops any run at its write to memberships (reads still pass), for as
    long as the test needs (idle in its transaction past the engine's bound)."""
    async with engine.connect() as connection:
        await connection.execute(text(UNBOUNDED_IDLE))
        await connection.execute(text("LOCK TABLE memberships IN EXCLUSIVE MODE"))
        yield connection
        await connection.rollback()
