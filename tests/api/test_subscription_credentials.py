"""Subscriptions end with their credentials: the probe found `tierChanged` subscriptions
receiving events after their JWT's `exp` and 35-45 s after their API key was revoked, and a
new `subscribe` accepted on the revoked key's socket. Now the connection is closed with 4403
when the JWT expires or (within the key cache period) the key is revoked, and every
`subscribe` verifies the credential again. Real sockets: the app under uvicorn, the client
the `websockets` package."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.audit import SERVICE
from service.access.auth import LEEWAY, Role, create_key, issue_token, revoke_key
from service.api import http
from service.config import Settings
from service.db.database import tenant_transaction
from tests.api.support import TEST_SECRET, serving, shop

OPERATION = (Path(__file__).parents[2] / "graphql/operations/tier_changed.graphql").read_text()


def _settings(**overrides: Any) -> Settings:
    return Settings(webhook_poll_interval=0, **overrides)


@contextlib.asynccontextmanager
async def connected(base: str, bearer: str) -> AsyncIterator[Any]:
    url = base.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": bearer}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        yield ws


async def subscribe(ws: Any, operation_id: str) -> None:
    message = {"id": operation_id, "type": "subscribe", "payload": {"query": OPERATION}}
    await ws.send(json.dumps(message))


async def closed(ws: Any, timeout: float = 20) -> tuple[int, str]:
    """The close code and reason, once the server closes the connection."""
    with pytest.raises(websockets.ConnectionClosed) as ended:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert ended.value.rcvd is not None, "the client, not the server, closed the connection"
    return ended.value.rcvd.code, ended.value.rcvd.reason


async def test_a_subscription_ends_when_its_jwt_expires(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    # Verifies for two more seconds: expired 28 s ago, within the 30 s allowed for skew.
    # Issued once the server is up (its start-up collects and freezes memory, which takes a
    # while on a busy machine).
    lifetime = dt.timedelta(seconds=2) - LEEWAY
    async with serving(engine, lifespan=True) as base:
        jwt = issue_token(TEST_SECRET, tenant, Role.viewer, "viewer", lifetime=lifetime)
        async with connected(base, f"Bearer {jwt}") as ws:
            await subscribe(ws, "1")
            assert await closed(ws) == (4403, "the token has expired")


async def test_a_subscription_ends_within_the_cache_period_after_its_key_is_revoked(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    async with tenant_transaction(engine, tenant) as connection:
        key, plain = await create_key(connection, tenant, Role.viewer, SERVICE)
    async with (
        serving(engine, _settings(api_key_cache_seconds=1), lifespan=True) as base,
        connected(base, f"Bearer {plain}") as ws,
    ):
        await subscribe(ws, "1")
        async with tenant_transaction(engine, tenant) as connection:
            await revoke_key(connection, tenant, key.id, SERVICE)
        assert await closed(ws) == (4403, "unknown or revoked API key")


async def test_every_subscribe_verifies_the_credential_again(
    engine: AsyncEngine, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the connection's own look at its key put off, a `subscribe` after the
    revocation is what closes it."""
    monkeypatch.setattr(http, "KEY_CHECK_SECONDS", 3600.0)
    await shop(engine, tenant)
    async with tenant_transaction(engine, tenant) as connection:
        key, plain = await create_key(connection, tenant, Role.viewer, SERVICE)
    async with (
        serving(engine, _settings(api_key_cache_seconds=0), lifespan=True) as base,
        connected(base, f"Bearer {plain}") as ws,
    ):
        await subscribe(ws, "1")
        async with tenant_transaction(engine, tenant) as connection:
            await revoke_key(connection, tenant, key.id, SERVICE)
        await subscribe(ws, "2")
        assert await closed(ws, timeout=5) == (4403, "unknown or revoked API key")
