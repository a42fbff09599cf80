"""What one request may take: the probe's findings, each reproduced and now bounded.

Work is made to wait by locks the test holds (a table lock, a scheme's run lock), so each
test sees where a request stands (waiting in Postgres, waiting in the process, cancelled)
without depending on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.access.auth import Role
from service.app import create_app
from service.config import Settings
from service.db import locks
from service.db.database import DatabaseLimits, create_engine
from service.db.tables import tenants
from tests.api.support import bearer, codes, data, post, request, serving, shop, with_secret
from tests.support import UNBOUNDED_IDLE

CARD = '{ customer(id: "ann") { id tiers { scheme tier } strategies { name } } }'
EVALUATE = 'mutation { evaluateScheme(scheme: "value") { changed } }'


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"still not: {what}"
        await asyncio.sleep(0.05)


async def _count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text(sql)) or 0)


async def waiting_on_customers(engine: AsyncEngine) -> int:
    """Statements of this database waiting for a lock on `customers` (named anywhere in their
    text: pg_stat_activity keeps the first 1,024 bytes, where the card's `FROM customers`
    comes after its columns and subqueries)."""
    return await _count(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE '%customers%'",
    )


@contextlib.asynccontextmanager
async def customers_locked(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Hold a lock that makes every read of `customers` wait."""
    async with engine.connect() as connection:
        await connection.execute(text(UNBOUNDED_IDLE))
        await connection.execute(text("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"))
        yield connection
        await connection.rollback()


async def another_tenant(engine: AsyncEngine, tenant: str) -> str:
    other = f"{tenant}_b"
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=other, name=other))
    await shop(engine, other)
    return other


async def test_a_statement_cut_off_by_its_timeout_answers_timeout(
    engine: AsyncEngine, database: URL, tenant: str
) -> None:
    await shop(engine, tenant)
    quick = create_engine(
        database, pool_size=2, max_overflow=2, limits=DatabaseLimits(statement_timeout=0.5)
    )
    try:
        async with customers_locked(engine):
            result = await post(quick, tenant, CARD)
    finally:
        await quick.dispose()
    assert codes(result) == ["TIMEOUT"]
    assert "longer than 0.5 s (TIERWISE_STATEMENT_TIMEOUT)" in result["errors"][0]["message"]


async def test_one_tenants_stalled_work_leaves_connections_for_the_others(
    engine: AsyncEngine, database: URL, tenant: str
) -> None:
    """The probe: 30 heavy aliases of one tenant held all 20 pooled connections and another
    tenant's `customer(id:)` waited 17.5 s. Here five evaluations of tenant A stall on their
    scheme's run lock (held by the test) in a pool of four connections: A holds its two, the
    other three wait in the process, and tenant B's customer card is answered meanwhile."""
    await shop(engine, tenant)
    other = await another_tenant(engine, tenant)
    small = create_engine(
        database, pool_size=2, max_overflow=2, limits=DatabaseLimits(tenant_connections=2)
    )

    async def two_stalled() -> bool:
        waiting = await _count(
            engine,
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
            "AND NOT l.granted",
        )
        return waiting == 2

    try:
        async with engine.begin() as holder:
            await holder.execute(text(UNBOUNDED_IDLE))
            await locks.acquire(holder, locks.Purpose.run, tenant, "value")
            runs = [asyncio.create_task(post(small, tenant, EVALUATE)) for _ in range(5)]
            await until(two_stalled, "two of A's runs waiting in Postgres")
            assert small.sync_engine.pool.checkedout() == 2  # type: ignore[attr-defined]
            card = data(await post(small, other, CARD))["customer"]
            assert card["tiers"] == [{"scheme": "value", "tier": "VIP"}]
            assert not any(run.done() for run in runs)
        for run in runs:
            assert "errors" not in await run
    finally:
        await small.dispose()


async def test_an_operation_waiting_past_the_timeout_for_its_tenants_budget_answers_timeout(
    engine: AsyncEngine, tenant: str
) -> None:
    """A's evaluation (cost 1,000) stalls on its scheme's run lock, held by the test, and
    fills A's budget of 1,000: A's second waits in the process, holding nothing, and after the
    statement timeout (1 s here) answers TIMEOUT naming the bound; B's card is answered
    meanwhile, and A's first finishes once the lock is let go."""
    await shop(engine, tenant)
    other = await another_tenant(engine, tenant)
    settings = with_secret(Settings(tenant_cost_budget=1_000, statement_timeout=1))
    transport = httpx.ASGITransport(app=create_app(engine, settings=settings))

    async def ask(client: httpx.AsyncClient, who: str, query: str) -> dict[str, Any]:
        response = await client.post("/graphql", json={"query": query}, headers=bearer(who))
        return dict(response.json())

    async def one_stalled() -> bool:
        return (
            await _count(
                engine,
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
                "AND NOT l.granted",
            )
            == 1
        )

    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        async with engine.begin() as holder:
            await holder.execute(text(UNBOUNDED_IDLE))
            await locks.acquire(holder, locks.Purpose.run, tenant, "value")
            first = asyncio.create_task(ask(client, tenant, EVALUATE))
            await until(one_stalled, "A's first run waiting in Postgres")
            started = time.monotonic()
            second = await ask(client, tenant, EVALUATE)
            assert codes(second) == ["TIMEOUT"], second
            assert "TIERWISE_TENANT_COST_BUDGET" in second["errors"][0]["message"]
            assert time.monotonic() - started >= 1
            card = await ask(client, other, CARD)
            assert card["data"]["customer"]["tiers"] == [{"scheme": "value", "tier": "VIP"}]
            assert not first.done()
        assert "errors" not in await first


async def test_a_body_over_the_limit_is_refused_before_it_is_parsed(
    engine: AsyncEngine, tenant: str
) -> None:
    settings = with_secret(Settings(max_request_bytes=1_000))
    where = "frequency > 1 or " * 100 + "frequency > 1"
    query = f'{{ customers(where: "{where}") {{ totalCount }} }}'
    response = await request(engine, {"query": query}, bearer(tenant), settings=settings)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert "larger than 1,000 bytes" in response.json()["errors"][0]["message"]

    # Sent in chunks with no Content-Length: refused once the bytes read pass the bound.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ customers { totalCount } }", "variables": {"pad": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}}'

    app = create_app(engine, settings=settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        streamed = await client.post(
            "/graphql",
            content=chunks(),
            headers={**bearer(tenant), "Content-Type": "application/json"},
        )
    assert streamed.status_code == 413
    # A body within the bound is served as ever.
    small = await post(engine, tenant, "{ metrics { name } }", settings=settings)
    assert data(small)["metrics"]


async def test_a_request_whose_client_went_away_stops_in_postgres(
    engine: AsyncEngine, tenant: str
) -> None:
    """The probe's heavy `where` ran on in Postgres 20 s after its client disconnected: now
    the request is cancelled, and its statement with it, while the lock it waits for is still
    held (without the cancellation it would wait for it, or for its 30 s timeout)."""
    await shop(engine, tenant)
    async with serving(engine) as base, customers_locked(engine):
        body: dict[str, Any] = {"query": CARD}
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            sent = asyncio.create_task(client.post("/graphql", json=body, headers=bearer(tenant)))

            async def is_waiting() -> bool:
                return await waiting_on_customers(engine) > 0

            await until(is_waiting, "the card's statement waiting for the lock")
            sent.cancel()  # the client gives up: httpx closes its connection
            with contextlib.suppress(asyncio.CancelledError):
                await sent

        async def stopped() -> bool:
            return await waiting_on_customers(engine) == 0

        await until(stopped, "the abandoned statement cancelled", timeout=10)


async def test_failed_authentication_is_limited_per_address(
    engine: AsyncEngine, tenant: str
) -> None:
    """The probe: 1,000 random well-formed API keys got 1,000 × 401, each a database lookup.
    Past the failure burst an address gets 429 with Retry-After instead, and no lookup; a
    caller that authenticates from the same address is still served."""
    settings = with_secret(Settings(auth_failure_burst=3, auth_failures_per_minute=1))
    app = create_app(engine, settings=settings)
    transport = httpx.ASGITransport(app=app)
    lookups = 0

    def counted(*_: object) -> None:
        nonlocal lookups
        lookups += 1

    event.listen(engine.sync_engine, "begin", counted)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
            statuses = []
            for _ in range(8):
                guess = f"tw_{tenant}_{secrets.token_hex(8)}_{secrets.token_hex(32)}"
                response = await client.post(
                    "/graphql",
                    json={"query": "{ metrics { name } }"},
                    headers={"Authorization": f"Bearer {guess}"},
                )
                statuses.append(response.status_code)
            assert statuses == [401] * 3 + [429] * 5
            assert lookups == 3
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            served = await client.post(
                "/graphql",
                json={"query": "{ metrics { name } }"},
                headers=bearer(tenant, Role.viewer),
            )
            assert served.status_code == 200
    finally:
        event.remove(engine.sync_engine, "begin", counted)


async def test_a_where_longer_than_a_condition_is_refused_unparsed(
    engine: AsyncEngine, tenant: str
) -> None:
    """The probe's 493 kB `where` blocked the event loop for 4.2 s while it was parsed."""
    where = " or ".join(f'region = "r{n}"' for n in range(30_000))
    result = await post(
        engine, tenant, "query ($w: String) { customers(where: $w) { totalCount } }", {"w": where}
    )
    assert codes(result) == ["BAD_INPUT"]
    assert "`where` is longer than 10,000 characters" in result["errors"][0]["message"]
