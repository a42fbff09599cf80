"""Webhooks against a real receiver on loopback (Starlette under uvicorn, in the test's loop)
that verifies every signature and can be told to fail, time out, hang, then recover."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.access import audit
from service.access.audit import Actor
from service.app import create_app
from service.config import Settings
from service.db.database import create_engine, tenant_transaction
from service.db.tables import customers, transitions
from service.engine import evaluation, webhooks
from service.engine.webhooks import Dispatcher, DispatchSettings
from service.errors import UserError
from tests.support import VALUE, load, order, publish

ADMIN = Actor("ops@example.com", "admin", "test")

# Small numbers keep the file fast: half-second attempts, retries after tenths of a second.
FAST = DispatchSettings(
    allow_private=True,  # the receiver is on loopback
    max_attempts=10,
    timeout=0.5,
    backoff_base=0.05,
    backoff_cap=0.2,
    poll_interval=0.05,
    lease=1.0,
)

RECENT = """
scheme recent "Recency" {
  tier Recent when recency <= 30 days
  tier Lapsed otherwise
}
"""


class Receiver:
    """A webhook endpoint. ``plan`` says what to do with the next requests, in order (then
    "ok"): "fail" answers 500 without keeping the event; "slow" keeps it but answers after the
    dispatcher's timeout (so the event comes again); "hang" keeps it and answers only when
    ``release`` is set. Events are kept deduplicated by id, as a real receiver must."""

    def __init__(self, secret: str = "") -> None:
        self.secrets = [secret] if secret else []
        self.plan: list[str] = []
        self.delay = 0.0
        self.arrivals: list[str] = []
        self.times: list[float] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0
        self.release = asyncio.Event()
        self.url = ""

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        timestamp = request.headers.get(webhooks.TIMESTAMP_HEADER, "")
        header = request.headers.get(webhooks.SIGNATURE_HEADER, "")
        if not any(webhooks.verify_signature(s, timestamp, body, header) for s in self.secrets):
            self.bad_signatures += 1
            return PlainTextResponse("bad signature", status_code=401)
        payload = json.loads(body)
        assert payload["id"] == request.headers[webhooks.EVENT_ID_HEADER]
        self.arrivals.append(payload["id"])
        self.times.append(time.monotonic())
        action = self.plan.pop(0) if self.plan else "ok"
        if action == "fail":
            return PlainTextResponse("receiver down", status_code=500)
        self.events.setdefault(payload["id"], payload)
        if action == "slow":
            await asyncio.sleep(FAST.timeout + 0.3)
        elif action == "hang":
            await self.release.wait()
        elif self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving(Receiver()) as running:
        yield running


@pytest.fixture(autouse=True)
async def no_leftovers(engine: AsyncEngine, tenant: str) -> AsyncIterator[None]:
    """Dispatchers serve every tenant: leave no pending delivery for the next test's."""
    yield
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE webhook_deliveries SET status = 'dead' WHERE tenant_id = :t"),
            {"t": tenant},
        )


async def register(
    engine: AsyncEngine, tenant: str, receiver: Receiver, **filters: str
) -> webhooks.CreatedWebhook:
    async with tenant_transaction(engine, tenant) as connection:
        created = await webhooks.create(
            connection,
            tenant,
            ADMIN,
            url=receiver.url,
            allow_http=True,
            allow_private=True,
            **filters,
        )
    receiver.secrets.append(created.secret)
    return created


async def outbox(engine: AsyncEngine, tenant: str) -> list[webhooks.Delivery]:
    async with tenant_transaction(engine, tenant) as connection:
        return await webhooks.deliveries(connection, tenant, limit=10_000)


async def expected_events(engine: AsyncEngine, tenant: str) -> dict[str, tuple[Any, ...]]:
    """Every transition of the tenant by its event id: customer, from, to."""
    async with tenant_transaction(engine, tenant) as connection:
        rows = await connection.execute(
            select(
                transitions.c.scheme_key,
                transitions.c.number,
                customers.c.external_id,
                transitions.c.from_tier,
                transitions.c.to_tier,
            )
            .join(
                customers,
                (customers.c.tenant_id == transitions.c.tenant_id)
                & (customers.c.id == transitions.c.customer_id),
            )
            .where(transitions.c.tenant_id == tenant)
        )
        return {f"{tenant}:{row.scheme_key}:{row.number}": tuple(row)[2:] for row in rows}


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def all_in(engine: AsyncEngine, tenant: str, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = await outbox(engine, tenant)
        return bool(found) and all(d.status == status for d in found)

    return check


@contextlib.asynccontextmanager
async def dispatching(
    engine: AsyncEngine, settings: DispatchSettings = FAST
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(engine, settings)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 10)


async def shop(engine: AsyncEngine, tenant: str) -> None:
    """Three customers in the value scheme: big VIP, mid Active, old Normal."""
    await load(
        engine,
        tenant,
        [
            order("o1", "big", 10, "4000"),
            order("o2", "big", 20, "3000"),
            order("o3", "mid", 5, "100"),
            order("o4", "old", 400, "10"),
        ],
    )
    await publish(engine, tenant, VALUE)


# --- signatures and registration --------------------------------------------------------------


def test_a_signature_verifies_only_for_its_secret_body_and_recent_timestamp() -> None:
    body = b'{"id":"t:1"}'
    now = time.time()
    stamp = str(int(now))
    header = webhooks.signature("s3cret-s3cret-s3cret", stamp, body)
    assert header.startswith("v1=") and len(header) == 3 + 64
    verify = webhooks.verify_signature
    assert verify("s3cret-s3cret-s3cret", stamp, body, header, now=now)
    assert verify("s3cret-s3cret-s3cret", stamp, body, f"v1=00, {header}", now=now)  # rotation
    assert not verify("other-secret-other", stamp, body, header, now=now)
    assert not verify("s3cret-s3cret-s3cret", stamp, body + b" ", header, now=now)
    assert not verify("s3cret-s3cret-s3cret", str(int(now) - 1), body, header, now=now)
    assert not verify("s3cret-s3cret-s3cret", stamp, body, header, now=now + 301)
    assert not verify("s3cret-s3cret-s3cret", "soon", body, header, now=now)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    settings = DispatchSettings(backoff_base=1.0, backoff_cap=10.0)
    for attempts, nominal in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
        for _ in range(20):
            assert 0.8 * nominal <= settings.backoff(attempts) <= min(10.0, 1.2 * nominal)
    assert all(8.0 <= settings.backoff(9) <= 10.0 for _ in range(20))


def test_urls_must_be_https_unless_http_is_allowed() -> None:
    assert webhooks.check_url(" https://hooks.example.com/t ") == "https://hooks.example.com/t"
    local = "http://127.0.0.1:9/x"
    assert webhooks.check_url(local, allow_http=True, allow_private=True) == local
    for bad, message in (
        ("http://hooks.example.com", "must start with https://"),
        ("ftp://hooks.example.com", "must start with https://"),
        ("hooks.example.com/x", "must start with https://"),
        ("https:///path", "has no host"),
        ("https://user:pw@hooks.example.com", "must not carry credentials"),
        ("https://hooks.example.com:99999", "not a valid URL"),
    ):
        with pytest.raises(UserError, match=message):
            webhooks.check_url(bad)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",  # a cloud's instance metadata
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
    ],
)
def test_urls_into_the_private_network_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(UserError, match="loopback, private or link-local"):
        webhooks.check_url(url)
    assert webhooks.check_url(url, allow_private=True) == url


async def test_a_host_resolving_into_the_private_network_is_not_called(
    engine: AsyncEngine, tenant: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered while allowed (or by a name re-pointed since): each attempt resolves the
    host first, and an address that is not public fails the attempt without calling it. The
    tenant learns only that the destination is not allowed: what the name resolves to (an
    oracle into the internal DNS) is in the server's log alone."""
    await shop(engine, tenant)
    await register(engine, tenant, receiver)
    guarded = dataclasses.replace(FAST, allow_private=False, max_attempts=1)
    with caplog.at_level("WARNING", logger="service.engine.webhooks"):
        async with dispatching(engine, guarded):
            await load(
                engine,
                tenant,
                [order("o5", "mid", 3, "6000")],
                after_load=evaluation.refresh_affected,
            )
            await until(all_in(engine, tenant, "dead"))
    (dead,) = await outbox(engine, tenant)
    assert dead.last_error == "destination not allowed"
    assert "127.0.0.1 resolves to the non-public address 127.0.0.1" in caplog.text
    assert receiver.arrivals == []


async def test_registering_and_deleting_are_audited_without_the_secret(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    async with tenant_transaction(engine, tenant) as connection:
        created = await webhooks.create(
            connection, tenant, ADMIN, url="https://hooks.example.com/a", scheme="value", tier="VIP"
        )
        given = await webhooks.create(
            connection, tenant, ADMIN, url="https://hooks.example.com/b", secret="x" * 20
        )
        for bad, message in (
            ({"scheme": "nope"}, "no published scheme 'nope'"),
            ({"scheme": "value", "tier": "Gold"}, "has no tier 'Gold'"),
            ({"secret": "short"}, "at least 16 characters"),
        ):
            with pytest.raises(UserError, match=message):
                await webhooks.create(
                    connection, tenant, ADMIN, url="https://hooks.example.com/c", **bad
                )
    assert created.secret.startswith("whsec_") and len(created.secret) > 40
    assert given.secret == "x" * 20
    assert (created.webhook.scheme, created.webhook.tier) == ("value", "VIP")
    async with tenant_transaction(engine, tenant) as connection:
        assert [w.url for w in await webhooks.list_webhooks(connection, tenant)] == [
            "https://hooks.example.com/a",
            "https://hooks.example.com/b",
        ]
        assert await webhooks.delete(connection, tenant, ADMIN, created.webhook.id)
        assert not await webhooks.delete(connection, tenant, ADMIN, created.webhook.id)
        assert [w.id for w in await webhooks.list_webhooks(connection, tenant)] == [
            given.webhook.id
        ]
        entries = [
            e for e in await audit.entries(connection, tenant) if e.action.startswith("webhook.")
        ]
    assert [(e.action, e.target, e.actor) for e in entries] == [
        ("webhook.delete", f"webhook:{created.webhook.id}", "ops@example.com"),
        ("webhook.create", f"webhook:{given.webhook.id}", "ops@example.com"),
        ("webhook.create", f"webhook:{created.webhook.id}", "ops@example.com"),
    ]
    assert entries[0].before["active"] and not entries[0].after["active"]
    logged = json.dumps([(e.before, e.after) for e in entries])
    assert created.secret not in logged and "x" * 20 not in logged


# --- the outbox -------------------------------------------------------------------------------


async def test_deliveries_follow_the_scheme_and_tier_filters(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    await publish(engine, tenant, RECENT)
    every = await register(engine, tenant, receiver)
    value = await register(engine, tenant, receiver, scheme="value")
    vip = await register(engine, tenant, receiver, scheme="value", tier="VIP")
    lapsed = await register(engine, tenant, receiver, scheme="recent", tier="Lapsed")
    any_vip = await register(engine, tenant, receiver, tier="VIP")
    await evaluation.evaluate_all(engine, tenant)
    # mid enters VIP (an incremental update), then stricter rules take big out of VIP.
    await load(
        engine, tenant, [order("o5", "mid", 3, "6000")], after_load=evaluation.refresh_affected
    )
    await publish(engine, tenant, VALUE.replace("> 5000", "> 6500"))
    await evaluation.evaluate(engine, tenant, "value")

    events = await expected_events(engine, tenant)
    async with tenant_transaction(engine, tenant) as connection:
        rows = await connection.execute(
            select(transitions.c.number, transitions.c.scheme_key).where(
                transitions.c.tenant_id == tenant
            )
        )
        schemes_of = {f"{tenant}:{scheme}:{number}": scheme for number, scheme in rows}
    found: dict[int, set[str]] = {}
    for delivery in await outbox(engine, tenant):
        found.setdefault(delivery.webhook_id, set()).add(delivery.event_id)

    def where(keep: Callable[[str, str | None, str | None], bool]) -> set[str]:
        return {e for e, (_, old, new) in events.items() if keep(schemes_of[e], old, new)}

    assert found[every.webhook.id] == set(events)
    assert found[value.webhook.id] == where(lambda s, _o, _n: s == "value")
    assert found[vip.webhook.id] == where(lambda s, o, n: s == "value" and "VIP" in (o, n))
    assert found[lapsed.webhook.id] == where(lambda s, o, n: s == "recent" and "Lapsed" in (o, n))
    assert found[any_vip.webhook.id] == found[vip.webhook.id]
    vip_moves = {events[e][1:] for e in found[vip.webhook.id]}
    assert vip_moves == {(None, "VIP"), ("Active", "VIP"), ("VIP", "Active")}
    (payload,) = [
        d.payload
        for d in await outbox(engine, tenant)
        if d.webhook_id == vip.webhook.id and d.payload["from"] == "VIP"
    ]
    assert payload["customer"] == "mid" and payload["to"] == "Active"
    assert payload["type"] == "tier.changed" and payload["tenant"] == tenant
    assert payload["scheme"] == "value" and payload["version"] == 2
    assert payload["at"].endswith("Z") and payload["trigger"] == "manual"


async def test_a_rolled_back_update_leaves_no_delivery(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    await evaluation.evaluate(engine, tenant, "value")
    await register(engine, tenant, receiver)
    before = len(await outbox(engine, tenant))

    async def refresh_then_fail(connection: AsyncConnection, tenant_id: str) -> None:
        assert await evaluation.refresh_affected(connection, tenant_id) == 1
        written = await webhooks.deliveries(connection, tenant_id)
        assert len(written) == before + 1  # in this transaction, next to its transition
        raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError, match="died"):
        await load(engine, tenant, [order("o5", "mid", 3, "6000")], after_load=refresh_then_fail)
    assert before == 0 and await outbox(engine, tenant) == []


async def test_no_webhook_no_delivery(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    result = await evaluation.evaluate(engine, tenant, "value")
    assert result is not None and result.changed == 3
    assert await outbox(engine, tenant) == []


# --- the dispatcher ---------------------------------------------------------------------------


async def test_every_transition_arrives_exactly_once_through_failures_and_timeouts(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    await register(engine, tenant, receiver)
    receiver.plan = ["fail", "slow", "fail", "fail", "slow", "fail"]
    async with dispatching(engine, FAST) as dispatcher:
        await evaluation.evaluate(engine, tenant, "value")
        await load(
            engine,
            tenant,
            [order("o5", "mid", 3, "6000"), order("o6", "new", 1, "50")],
            after_load=evaluation.refresh_affected,
        )
        await until(all_in(engine, tenant, "delivered"))
    events = await expected_events(engine, tenant)
    assert len(events) == 5
    assert set(receiver.events) == set(events)
    for event_id, payload in receiver.events.items():
        assert (payload["customer"], payload["from"], payload["to"]) == events[event_id]
    # Each planned failure and slow answer brought its event again, and it was kept once (on a
    # loaded machine an answer may also miss the half-second timeout: more repeats, still once).
    assert len(receiver.arrivals) >= len(events) + 6
    assert dispatcher.attempted >= len(receiver.arrivals)  # a timed-out attempt may not arrive
    assert receiver.bad_signatures == 0
    retried = [d for d in await outbox(engine, tenant) if d.attempts > 1]
    assert retried and all((d.last_status, d.last_error) == (204, None) for d in retried)


async def test_retries_back_off_until_dead_and_a_replay_delivers(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    await evaluation.evaluate(engine, tenant, "value")
    created = await register(engine, tenant, receiver)
    receiver.plan = ["fail"] * 4
    backoff = DispatchSettings(
        max_attempts=4,
        timeout=0.5,
        backoff_base=0.2,
        backoff_cap=5.0,
        poll_interval=0.02,
        allow_private=True,
    )
    async with dispatching(engine, backoff):
        await load(
            engine, tenant, [order("o5", "mid", 3, "6000")], after_load=evaluation.refresh_affected
        )
        await until(all_in(engine, tenant, "dead"))
        (dead,) = await outbox(engine, tenant)
        assert (dead.attempts, dead.last_status) == (4, 500)
        assert dead.last_error == "HTTP 500: receiver down"
        gaps = [b - a for a, b in zip(receiver.times, receiver.times[1:], strict=False)]
        # At least base * 2^(n-1), less the 20 % jitter (a busy machine only adds to them).
        assert len(gaps) == 3, gaps
        assert gaps[0] >= 0.15 and gaps[1] >= 0.31 and gaps[2] >= 0.63, gaps
        assert gaps[2] > gaps[0], gaps
        assert receiver.events == {}

        async with tenant_transaction(engine, tenant) as connection:
            replayed = await webhooks.replay(connection, tenant, ADMIN, dead.id)
            assert (replayed.status, replayed.attempts) == ("pending", 0)
            with pytest.raises(UserError, match="is pending: only dead ones replay"):
                await webhooks.replay(connection, tenant, ADMIN, dead.id)
            with pytest.raises(UserError, match="no such webhook delivery"):
                await webhooks.replay(connection, tenant, ADMIN, dead.id + 10_000)
        await until(all_in(engine, tenant, "delivered"))
    assert list(receiver.events) == [dead.event_id]

    # Every dead delivery of a webhook at once.
    receiver.plan = ["fail"] * 4
    async with dispatching(engine, backoff):
        await load(
            engine, tenant, [order("o6", "old", 3, "9000")], after_load=evaluation.refresh_affected
        )
        await until(lambda: _count(engine, tenant, "dead", 1))
        async with tenant_transaction(engine, tenant) as connection:
            assert await webhooks.replay_dead(connection, tenant, ADMIN, created.webhook.id) == 1
            actions = [e.action for e in await audit.entries(connection, tenant)]
        assert actions[:2] == ["webhook.replay", "webhook.replay"]
        await until(all_in(engine, tenant, "delivered"))
    assert len(receiver.events) == 2


async def _count(engine: AsyncEngine, tenant: str, status: str, count: int) -> bool:
    return sum(d.status == status for d in await outbox(engine, tenant)) == count


async def test_a_deleted_webhook_gets_nothing_more(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    created = await register(engine, tenant, receiver)
    await evaluation.evaluate(engine, tenant, "value")  # three pending, no dispatcher yet
    async with tenant_transaction(engine, tenant) as connection:
        assert await webhooks.delete(connection, tenant, ADMIN, created.webhook.id)
    found = await outbox(engine, tenant)
    assert [d.status for d in found] == ["dead"] * 3
    assert {d.last_error for d in found} == {"the webhook was deleted"}
    await load(
        engine, tenant, [order("o5", "mid", 3, "6000")], after_load=evaluation.refresh_affected
    )
    assert len(await outbox(engine, tenant)) == 3
    async with tenant_transaction(engine, tenant) as connection:
        with pytest.raises(UserError, match="deleted webhook"):
            await webhooks.replay(connection, tenant, ADMIN, found[0].id)
        with pytest.raises(UserError, match="no such active webhook"):
            await webhooks.replay_dead(connection, tenant, ADMIN, created.webhook.id)


async def test_a_restart_mid_delivery_loses_nothing(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    await register(engine, tenant, receiver)
    receiver.plan = ["hang"]
    slow = DispatchSettings(
        timeout=5.0, poll_interval=0.05, lease=1.0, backoff_base=0.05, allow_private=True
    )
    first = Dispatcher(engine, slow)
    task = asyncio.create_task(first.run())
    await evaluation.evaluate(engine, tenant, "value")
    await until(lambda: _count(engine, tenant, "delivered", 2))
    assert len(receiver.arrivals) == 3  # the third is in flight, its answer hanging
    task.cancel()  # the process dies
    with contextlib.suppress(asyncio.CancelledError):
        await task
    (in_flight,) = [d for d in await outbox(engine, tenant) if d.status == "pending"]
    assert in_flight.attempts == 1

    # While no dispatcher runs, transitions are still recorded, with their deliveries.
    await load(
        engine, tenant, [order("o5", "mid", 3, "6000")], after_load=evaluation.refresh_affected
    )
    receiver.release.set()
    async with dispatching(engine, FAST):  # the restarted service
        await until(all_in(engine, tenant, "delivered"))
    events = await expected_events(engine, tenant)
    assert set(receiver.events) == set(events) and len(events) == 4
    # The interrupted one came again once its lease ran out; the receiver kept it once.
    assert sorted(receiver.arrivals) == sorted([*events, in_flight.event_id])


async def test_stopping_lets_the_attempts_under_way_finish(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    await register(engine, tenant, receiver)
    receiver.delay = 0.3
    dispatcher = Dispatcher(engine, FAST)
    stopping = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stopping))
    await evaluation.evaluate(engine, tenant, "value")
    await until(lambda: _arrived(receiver, 3))
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert [d.status for d in await outbox(engine, tenant)] == ["delivered"] * 3


async def _arrived(receiver: Receiver, count: int) -> bool:
    return len(receiver.arrivals) >= count


async def test_two_dispatchers_never_send_one_delivery_twice(
    engine: AsyncEngine, tenant: str, receiver: Receiver
) -> None:
    await load(engine, tenant, [order(f"o{i}", f"c{i}", 5, "100") for i in range(40)])
    await publish(engine, tenant, VALUE)
    await register(engine, tenant, receiver)
    await evaluation.evaluate(engine, tenant, "value")
    receiver.delay = 0.02
    settings = DispatchSettings(timeout=5.0, poll_interval=0.02, batch_size=4, allow_private=True)
    async with dispatching(engine, settings) as one, dispatching(engine, settings) as two:
        await until(all_in(engine, tenant, "delivered"))
    assert len(receiver.arrivals) == len(set(receiver.arrivals)) == 40
    assert one.attempted + two.attempted == 40
    assert one.attempted > 0 and two.attempted > 0


async def test_the_service_runs_a_dispatcher_and_stops_it_on_shutdown(
    engine: AsyncEngine, database: URL, tenant: str, receiver: Receiver
) -> None:
    await shop(engine, tenant)
    await register(engine, tenant, receiver)
    settings = Settings(
        webhook_poll_interval=0.05,
        webhook_timeout=1.0,
        shutdown_timeout=5.0,
        webhook_allow_private=True,
    )
    own = create_engine(
        database, pool_size=2, max_overflow=2
    )  # the app disposes of its engine on shutdown
    app = create_app(own, settings=settings)
    async with app.router.lifespan_context(app):
        await evaluation.evaluate(engine, tenant, "value")
        await until(all_in(engine, tenant, "delivered"))
    assert len(receiver.events) == 3
