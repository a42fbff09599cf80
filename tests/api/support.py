"""Posting GraphQL to the app in process (httpx over ASGI) against the test database."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Principal, Role, issue_token, principal
from service.app import create_app
from service.config import Settings
from service.data.ingest import import_rows
from service.data.records import Kind
from service.engine import evaluation, schemes, strategies
from tests.support import VALUE, order

# Every test request carries an HS256 token for its tenant (admin unless a test says otherwise).
TEST_SECRET = "tierwise-tests-hs256-secret-of-32-bytes-or-more"


def with_secret(settings: Settings | None = None) -> Settings:
    """``settings`` (default: from the environment) verifying the tests' tokens."""
    settings = settings or Settings()
    if settings.jwt_secret is None:
        settings = settings.model_copy(update={"jwt_secret": SecretStr(TEST_SECRET)})
    return settings


def token(tenant: str, role: Role = Role.admin, subject: str = "test") -> str:
    return issue_token(TEST_SECRET, tenant, role, subject)


def bearer(tenant: str, role: Role = Role.admin) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, role)}"}


def caller(tenant: str, role: Role = Role.admin) -> Principal:
    """A verified caller, for a `Context` built by hand."""
    return principal(tenant, role, "test", f"jwt:{tenant}:test", "test")


async def request(
    engine: AsyncEngine,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    settings: Settings | None = None,
) -> httpx.Response:
    """One POST to /graphql, as it is answered."""
    app = create_app(engine, settings=with_secret(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        return await client.post("/graphql", json=body, headers=headers)


async def post(
    engine: AsyncEngine,
    tenant: str,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    operation: str | None = None,
    role: Role = Role.admin,
) -> dict[str, Any]:
    """The response body of one GraphQL request in ``tenant``, as ``role``."""
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation is not None:
        body["operationName"] = operation
    response = await request(engine, body, bearer(tenant, role), settings=settings)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def data(result: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in result, result["errors"]
    found: dict[str, Any] = result["data"]
    return found


def codes(result: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in result.get("errors", [])]


async def shop(engine: AsyncEngine, tenant: str) -> None:
    """Three customers: ann is VIP (two big orders), bob Active (one recent small order),
    cyd Normal (one order long ago); the value scheme published with a strategy per tier."""
    people = [
        {"customer_id": "ann", "name": "Ann", "region": "east", "age": "41"},
        {"customer_id": "bob", "name": "Bob", "region": "west", "age": "29"},
        {"customer_id": "cyd", "name": "Cyd", "region": "east"},
    ]
    await import_rows(engine, Kind.customers, tenant, enumerate(people), source="test")
    rows = [
        order("o1", "ann", 10, "3000"),
        order("o2", "ann", 20, "2500"),
        order("o3", "bob", 5, "40"),
        order("o4", "cyd", 400, "100"),
    ]
    await import_rows(engine, Kind.orders, tenant, enumerate(rows), source="test")
    async with engine.begin() as connection:
        await schemes.publish(connection, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    async with engine.begin() as connection:
        for tier, name, channel, priority in (
            ("VIP", "Personal manager", "phone", 10),
            ("VIP", "Exclusive offers", "email", 20),
            ("Active", "Promotions", "email", 50),
            ("Normal", "Win-back", "email", 50),
        ):
            await strategies.save(
                connection,
                tenant,
                scheme="value",
                tier=tier,
                name=name,
                channel=channel,
                priority=priority,
            )


@contextlib.asynccontextmanager
async def serving(
    engine: AsyncEngine, settings: Settings | None = None, *, lifespan: bool = False
) -> AsyncIterator[str]:
    """The app under uvicorn on a loopback port, in this event loop (real sockets: a client
    can go away, a WebSocket can be closed); yields its base URL, ``http://127.0.0.1:PORT``."""
    config = with_secret(settings or Settings(webhook_poll_interval=0))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(engine, settings=config),
            log_level="warning",
            lifespan="on" if lifespan else "off",
            timeout_graceful_shutdown=2,
        )
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
