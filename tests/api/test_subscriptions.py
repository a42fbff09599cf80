from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.access.auth import Role
from service.api.context import Context
from service.api.feed import LISTENER_NAME, FeedLost, TransitionFeed
from service.api.loaders import TransitionRow
from service.api.schema import build_schema
from service.app import create_app
from service.config import Settings
from tests.api.support import caller, post, shop, token, with_secret
from tests.support import day

OPERATION = (Path(__file__).parents[2] / "graphql/operations/tier_changed.graphql").read_text()
# This test database's listening connections.
MINE = "FROM pg_stat_activity WHERE application_name = :name AND datname = current_database()"
ORDERS = """mutation ($orders: [OrderInput!]!) { recordOrders(orders: $orders) { tierChanges } }"""


async def _listening(feed: TransitionFeed) -> None:
    """Until a subscription has LISTENed and read where it starts."""
    for _ in range(200):
        if feed.active:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the subscription never started listening")


async def test_tier_changed_hears_ingest_through_the_api(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    schema = build_schema(Settings())
    feed = TransitionFeed(engine)
    stream = await schema.subscribe(
        OPERATION,
        variable_values={"scheme": "value"},
        context_value=Context(engine, caller(tenant), Settings(), feed),
    )
    assert isinstance(stream, AsyncGenerator)
    first = asyncio.ensure_future(anext(stream))
    await _listening(feed)
    # Bob's second order in a year, big: he becomes VIP; another tenant's changes stay apart.
    orders = [{"id": "o9", "customerId": "bob", "orderedAt": day(1), "amount": "6000"}]
    result = await post(engine, tenant, ORDERS, {"orders": orders})
    assert result["data"]["recordOrders"]["tierChanges"] == 1
    heard: Any = await asyncio.wait_for(first, timeout=10)
    assert heard.errors is None
    change = heard.data["tierChanged"]
    assert (change["scheme"], change["customerId"], change["fromTier"], change["toTier"]) == (
        "value",
        "bob",
        "Active",
        "VIP",
    )
    assert change["trigger"] == "api" and change["customer"] == {"name": "Bob"}
    await stream.aclose()
    assert feed.active == 0
    await feed.close()


async def test_tier_changes_reach_websocket_clients_over_graphql_transport_ws(
    engine: AsyncEngine, database: URL, tenant: str
) -> None:
    await shop(engine, tenant)
    # The app runs in TestClient's own event loop: it gets an engine without a pool to share.
    own = create_async_engine(database, poolclass=NullPool)
    app = create_app(own, settings=with_secret())
    # Entered, the client runs the app's lifespan: its shutdown closes the feed.
    with (
        TestClient(app) as client,
        client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        init = {"authorization": f"Bearer {token(tenant, Role.viewer)}"}
        ws.send_json({"type": "connection_init", "payload": init})
        assert ws.receive_json() == {"type": "connection_ack"}
        ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": OPERATION, "variables": {}}}
        )
        await _listening(app.state.feed)
        orders = [{"id": "o9", "customerId": "cyd", "orderedAt": day(1), "amount": "1"}]
        await post(engine, tenant, ORDERS, {"orders": orders})
        message = ws.receive_json()
        assert message["type"] == "next" and message["id"] == "1"
        change = message["payload"]["data"]["tierChanged"]
        assert (change["customerId"], change["fromTier"], change["toTier"]) == (
            "cyd",
            "Normal",
            "Active",
        )
        ws.send_json({"id": "1", "type": "complete"})


def test_the_legacy_graphql_ws_protocol_is_refused(engine: AsyncEngine) -> None:
    client = TestClient(create_app(engine))
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws,
    ):
        ws.send_json({"type": "connection_init"})
        ws.receive_json()
    assert refused.value.code == 4406


async def test_one_listening_connection_serves_every_subscription_of_a_process(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    feed = TransitionFeed(engine)
    mine = feed.watch(tenant, "value")
    others = feed.watch(f"{tenant}x", None)
    first_mine = asyncio.ensure_future(anext(mine))
    first_other = asyncio.ensure_future(anext(others))
    for _ in range(200):
        if feed.active == 2:
            break
        await asyncio.sleep(0.05)
    async with engine.connect() as connection:
        listeners = await connection.scalar(
            text(f"SELECT count(*) {MINE}"),
            {"name": LISTENER_NAME},
        )
    assert listeners == 1
    orders = [{"id": "o9", "customerId": "cyd", "orderedAt": day(1), "amount": "1"}]
    await post(engine, tenant, ORDERS, {"orders": orders})
    heard = await asyncio.wait_for(first_mine, timeout=10)
    assert (heard.customer_external_id, heard.to_tier) == ("cyd", "Active")
    assert not first_other.done()
    # A lost connection ends the subscriptions with an error instead of silence.
    async with engine.connect() as connection:
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"
            ),
            {"n": LISTENER_NAME},
        )
    with pytest.raises(FeedLost):
        await asyncio.wait_for(first_other, timeout=10)
    await mine.aclose()
    await others.aclose()
    assert feed.active == 0
    await feed.close()


class _Failing(TransitionFeed):
    def __init__(self, engine: AsyncEngine, error: Exception) -> None:
        super().__init__(engine)
        self.error = error

    async def watch(self, tenant: str, scheme: str | None) -> AsyncGenerator[TransitionRow, None]:
        raise self.error
        yield  # an async generator, as the real one


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (FeedLost("lost the connection"), "UNAVAILABLE", "lost the connection: subscribe again"),
        (RuntimeError("internal detail"), "INTERNAL", "Unexpected error."),
    ],
)
async def test_subscription_errors_have_codes_and_hide_internals(
    engine: AsyncEngine, tenant: str, error: Exception, code: str, message: str
) -> None:
    context = Context(engine, caller(tenant), Settings(), _Failing(engine, error))
    stream = await build_schema(Settings()).subscribe(OPERATION, context_value=context)
    assert isinstance(stream, AsyncGenerator)
    result: Any = await anext(stream)
    (reported,) = result.errors
    assert (reported.message, reported.extensions) == (message, {"code": code})


async def test_an_unknown_scheme_ends_the_subscription_with_not_found(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    feed = TransitionFeed(engine)
    context = Context(engine, caller(tenant), Settings(), feed)
    stream = await build_schema(Settings()).subscribe(
        OPERATION, variable_values={"scheme": "nope"}, context_value=context
    )
    assert isinstance(stream, AsyncGenerator)
    result: Any = await asyncio.wait_for(anext(stream), timeout=10)
    (reported,) = result.errors
    assert reported.extensions == {"code": "NOT_FOUND"}
    assert reported.message == f"no published scheme 'nope' in tenant {tenant!r}"
    assert feed.active == 0
    await feed.close()


@pytest.mark.parametrize("scheme", ["value\x00", "value\ud800"])
async def test_unstorable_text_in_a_subscription_argument_is_bad_input(
    engine: AsyncEngine, tenant: str, scheme: str
) -> None:
    feed = TransitionFeed(engine)
    context = Context(engine, caller(tenant), Settings(), feed)
    stream = await build_schema(Settings()).subscribe(
        OPERATION, variable_values={"scheme": scheme}, context_value=context
    )
    assert isinstance(stream, AsyncGenerator)
    result: Any = await asyncio.wait_for(anext(stream), timeout=10)
    (reported,) = result.errors
    assert reported.extensions == {"code": "BAD_INPUT"}
    assert reported.message == (
        "argument scheme: text may hold neither NUL characters nor unpaired surrogates"
    )
    assert feed.active == 0
    await feed.close()
