"""Webhooks: tier transitions POSTed to the HTTPS endpoints tenants register.

Deliveries go through an outbox. `enqueue` writes one `webhook_deliveries` row per matching
webhook and transition in the transaction that records the transitions (evaluation's), so a
transition that commits has its deliveries, and one that rolls back has none. The `Dispatcher`
(every replica runs one) claims due deliveries in short transactions with ``FOR UPDATE SKIP
LOCKED``, leasing them for the length of an attempt, POSTs each signed body, and records the
outcome: delivered, retried later with exponential backoff, or dead after the configured number
of attempts (replayable). A process that dies mid-attempt leaves its claimed deliveries pending;
they are due again when the lease ends. So every transition is delivered at least once, and
exactly once after the receiver drops repeats of an event id (docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy import Row, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.access import audit
from service.access.audit import Actor
from service.config import Settings
from service.db.database import is_citus, plain_url
from service.db.tables import webhook_deliveries, webhooks
from service.engine import schemes as published
from service.errors import NotFound, UserError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

EVENT_TYPE = "tier.changed"
EVENT_ID_HEADER = "Tierwise-Event-Id"
TIMESTAMP_HEADER = "Tierwise-Timestamp"
SIGNATURE_HEADER = "Tierwise-Signature"
SIGNATURE_VERSION = "v1"
USER_AGENT = "Tierwise-Webhooks/1"
SECRET_PREFIX = "whsec_"
MIN_SECRET_LENGTH = 16

STATUSES = ("pending", "delivered", "dead")

# Committed enqueues wake the dispatchers of every replica (they also poll).
DELIVERIES_CHANNEL = "tierwise_webhook_deliveries"
LISTENER_NAME = "tierwise-webhooks"

# `last_error` of an attempt refused before sending: whether the host resolved, and to what,
# stays in the server's log.
DESTINATION_NOT_ALLOWED = "destination not allowed"
# Kept of a failed response's body in `last_error`.
_ERROR_BODY_CHARS = 200


# --- signatures -------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``Tierwise-Signature`` header: ``v1=`` and the hex HMAC-SHA256, keyed by the
    webhook's secret, of the timestamp header, a dot and the raw body."""
    message = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """What a receiver checks: ``header`` (``Tierwise-Signature``, possibly several
    comma-separated ``v1=...`` values) holds the signature of ``timestamp`` (the
    ``Tierwise-Timestamp`` header, Unix seconds) and the raw ``body``, and the timestamp is
    within ``tolerance`` seconds of ``now`` (replays of old requests are refused).

    Self-contained on purpose (hmac, hashlib, time): receivers may copy it.
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    message = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


# --- registration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    id: int
    url: str
    scheme: str | None
    """Only transitions of this scheme (None: every scheme)."""
    tier: str | None
    """Only transitions entering or leaving this tier (None: every tier)."""
    active: bool
    created_at: dt.datetime
    created_by: str


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str
    """The signing secret: shown once, at creation."""


def _webhook(row: Row[Any]) -> Webhook:
    return Webhook(
        row.id, row.url, row.scheme_key, row.tier, row.active, row.created_at, row.created_by
    )


def check_url(url: str, *, allow_http: bool = False, allow_private: bool = False) -> str:
    """``url`` if a webhook may be sent to it: absolute HTTPS (plain HTTP only when allowed,
    for tests and demos on loopback), no credentials in it, and, unless private addresses
    are allowed, not naming a loopback, private or link-local host (a tenant must not make
    the service call into its own network)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as error:
        raise UserError(f"webhook URL {url!r} is not a valid URL: {error}") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        hint = "" if allow_http else " (plain http only with TIERWISE_WEBHOOK_ALLOW_HTTP=true)"
        raise UserError(f"webhook URL {url!r} must start with https://{hint}")
    if not parts.hostname:
        raise UserError(f"webhook URL {url!r} has no host")
    if not allow_private and _names_a_private_host(parts.hostname):
        raise UserError(
            f"webhook URL {url!r} points to a loopback, private or link-local address "
            "(allowed only with TIERWISE_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    if parts.username is not None or parts.password is not None:
        raise UserError(f"webhook URL {url!r} must not carry credentials: verify the signature")
    if parts.fragment:
        raise UserError(f"webhook URL {url!r} must not have a #fragment")
    return url


def _is_public(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_global


def _names_a_private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not _is_public(host)
    except ValueError:  # a name, not an address: checked when it is resolved, at delivery
        return False


async def _private_address_of(host: str, port: int) -> str | None:
    """A non-public address ``host`` resolves to, if any (checked before every attempt, so a
    name re-pointed into the private network after registration is refused too)."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in found:
        if not _is_public(str(sockaddr[0])):
            return str(sockaddr[0])
    return None


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _public(webhook: Webhook) -> dict[str, Any]:
    """What the audit log keeps of a webhook (never its secret)."""
    return {
        "url": webhook.url,
        "scheme": webhook.scheme,
        "tier": webhook.tier,
        "active": webhook.active,
    }


async def create(
    connection: AsyncConnection,
    tenant: str,
    actor: Actor,
    *,
    url: str,
    scheme: str | None = None,
    tier: str | None = None,
    secret: str | None = None,
    allow_http: bool = False,
    allow_private: bool = False,
) -> CreatedWebhook:
    """Register an endpoint for ``tenant``'s transitions (of ``scheme``, entering or leaving
    ``tier``, when given); a signing secret is generated unless one is given. Raises
    UserError for a bad URL or secret, NotFound for an unpublished scheme or tier."""
    url = check_url(url, allow_http=allow_http, allow_private=allow_private)
    if secret is None:
        secret = new_secret()
    elif len(secret) < MIN_SECRET_LENGTH:
        raise UserError(f"a webhook secret needs at least {MIN_SECRET_LENGTH} characters")
    if scheme is not None:
        found = await published.find(connection, tenant, scheme)
        if tier is not None:
            found.check_tier(tier)
    row = (
        await connection.execute(
            webhooks.insert()
            .values(
                tenant_id=tenant,
                url=url,
                secret=secret,
                scheme_key=scheme,
                tier=tier,
                created_by=actor.subject,
            )
            .returning(webhooks)
        )
    ).one()
    webhook = _webhook(row)
    await audit.record(
        connection, tenant, actor, "webhook.create", f"webhook:{webhook.id}", after=_public(webhook)
    )
    return CreatedWebhook(webhook, secret)


async def list_webhooks(
    connection: AsyncConnection, tenant: str, *, include_deleted: bool = False
) -> list[Webhook]:
    query = select(webhooks).where(webhooks.c.tenant_id == tenant)
    if not include_deleted:
        query = query.where(webhooks.c.active)
    return [_webhook(row) for row in await connection.execute(query.order_by(webhooks.c.id))]


async def delete(connection: AsyncConnection, tenant: str, actor: Actor, webhook_id: int) -> bool:
    """Deactivate a webhook (the row stays, with its deliveries, for the record): nothing more
    is enqueued for it and its pending deliveries are marked dead. False if there was no active
    webhook of that id."""
    row = (
        await connection.execute(
            update(webhooks)
            .where(webhooks.c.tenant_id == tenant, webhooks.c.id == webhook_id, webhooks.c.active)
            .values(active=False)
            .returning(webhooks)
        )
    ).one_or_none()
    if row is None:
        return False
    await connection.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.tenant_id == tenant,
            webhook_deliveries.c.webhook_id == webhook_id,
            webhook_deliveries.c.status == "pending",
        )
        .values(status="dead", last_error="the webhook was deleted")
    )
    webhook = _webhook(row)
    await audit.record(
        connection,
        tenant,
        actor,
        "webhook.delete",
        f"webhook:{webhook_id}",
        before={**_public(webhook), "active": True},
        after=_public(webhook),
    )
    return True


# --- the outbox -------------------------------------------------------------------------------

# The transitions of one scheme with ids in [first, last], written by the caller's statement:
# runs and incremental updates of a scheme hold its advisory lock until commit, so no other
# transaction writes transitions of that scheme in between. With no active webhook of the
# tenant, the plan stops at the (empty) index scan of `webhooks`.
_ENQUEUE = text(
    """
WITH enqueued AS (
    INSERT INTO webhook_deliveries (tenant_id, webhook_id, event_id, payload)
    SELECT w.tenant_id, w.id, t.tenant_id || ':' || t.scheme_key || ':' || t.number,
           jsonb_build_object(
               'id', t.tenant_id || ':' || t.scheme_key || ':' || t.number,
               'type', CAST(:type AS text),
               'tenant', t.tenant_id,
               'scheme', t.scheme_key,
               'customer', c.external_id,
               'from', t.from_tier,
               'to', t.to_tier,
               'at', to_char(t.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'version', t.version,
               'trigger', t.trigger
           )
    FROM webhooks w
    JOIN transitions t
      ON t.tenant_id = w.tenant_id AND t.scheme_key = :k AND t.id BETWEEN :first AND :last
    JOIN customers c ON c.tenant_id = t.tenant_id AND c.id = t.customer_id
    WHERE w.tenant_id = :t AND w.active
      AND (w.scheme_key IS NULL OR w.scheme_key = :k)
      AND (w.tier IS NULL OR w.tier = t.from_tier OR w.tier = t.to_tier)
    ON CONFLICT (tenant_id, webhook_id, event_id) DO NOTHING
    RETURNING 1
)
SELECT n, (SELECT pg_notify(:channel, :t) WHERE n > 0) IS NULL
FROM (SELECT count(*) AS n FROM enqueued) counted
"""
)


async def enqueue(
    connection: AsyncConnection, tenant: str, scheme: str, first_id: int, last_id: int
) -> int:
    """Outbox rows for the transitions of ``scheme`` with ids ``first_id``..``last_id`` just
    written in this transaction, one per matching active webhook; returns how many."""
    enqueued, _ = (
        await connection.execute(
            _ENQUEUE,
            {
                "t": tenant,
                "k": scheme,
                "first": first_id,
                "last": last_id,
                "type": EVENT_TYPE,
                "channel": DELIVERIES_CHANNEL,
            },
        )
    ).one()
    return int(enqueued)


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: int
    event_id: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    last_status: int | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        row.id,
        row.webhook_id,
        row.event_id,
        row.payload,
        row.status,
        row.attempts,
        row.next_attempt_at,
        row.last_error,
        row.last_status,
        row.created_at,
        row.delivered_at,
    )


async def deliveries(
    connection: AsyncConnection,
    tenant: str,
    *,
    status: str | None = None,
    webhook_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Delivery]:
    """The newest first; ``before_id`` pages on from an earlier page's last id."""
    if status is not None and status not in STATUSES:
        raise UserError(f"no delivery status {status!r}; there are {', '.join(STATUSES)}")
    query = select(webhook_deliveries).where(webhook_deliveries.c.tenant_id == tenant)
    if status is not None:
        query = query.where(webhook_deliveries.c.status == status)
    if webhook_id is not None:
        query = query.where(webhook_deliveries.c.webhook_id == webhook_id)
    if before_id is not None:
        query = query.where(webhook_deliveries.c.id < before_id)
    rows = await connection.execute(query.order_by(webhook_deliveries.c.id.desc()).limit(limit))
    return [_delivery(row) for row in rows]


def _replayable(tenant: str) -> Any:
    """Dead deliveries whose webhook is still active."""
    active = (
        select(webhooks.c.id)
        .where(webhooks.c.tenant_id == tenant, webhooks.c.active)
        .scalar_subquery()
    )
    return (
        webhook_deliveries.c.tenant_id == tenant,
        webhook_deliveries.c.status == "dead",
        webhook_deliveries.c.webhook_id.in_(active),
    )


async def _announce(connection: AsyncConnection, tenant: str) -> None:
    """Wake the dispatchers when this transaction commits."""
    await connection.execute(
        text("SELECT pg_notify(:channel, :t)"), {"channel": DELIVERIES_CHANNEL, "t": tenant}
    )


_REPLAYED = {
    "status": "pending",
    "attempts": 0,
    "next_attempt_at": func.now(),
}


async def replay(
    connection: AsyncConnection, tenant: str, actor: Actor, delivery_id: int
) -> Delivery:
    """Make a dead delivery pending again, with a fresh set of attempts, due now. Raises
    NotFound for no such delivery, UserError unless it is dead and its webhook still active."""
    row = (
        await connection.execute(
            update(webhook_deliveries)
            .where(*_replayable(tenant), webhook_deliveries.c.id == delivery_id)
            .values(**_REPLAYED)
            .returning(webhook_deliveries)
        )
    ).one_or_none()
    if row is None:
        found = (
            await connection.execute(
                select(webhook_deliveries.c.status).where(
                    webhook_deliveries.c.tenant_id == tenant,
                    webhook_deliveries.c.id == delivery_id,
                )
            )
        ).scalar_one_or_none()
        if found is None:
            raise NotFound("no such webhook delivery")
        # Not naming the delivery by its internal id: callers know it by the id they gave.
        if found != "dead":
            raise UserError(f"the webhook delivery is {found}: only dead ones replay")
        raise UserError("the webhook delivery belongs to a deleted webhook")
    await audit.record(
        connection,
        tenant,
        actor,
        "webhook.replay",
        f"webhook:{row.webhook_id}",
        after={"deliveries": [delivery_id]},
    )
    await _announce(connection, tenant)
    return _delivery(row)


async def replay_dead(
    connection: AsyncConnection, tenant: str, actor: Actor, webhook_id: int
) -> int:
    """Make every dead delivery of an active webhook pending again; returns how many. Raises
    NotFound for no active webhook of that id."""
    exists = await connection.scalar(
        select(webhooks.c.id).where(
            webhooks.c.tenant_id == tenant, webhooks.c.id == webhook_id, webhooks.c.active
        )
    )
    if exists is None:
        raise NotFound("no such active webhook")
    rows = await connection.execute(
        update(webhook_deliveries)
        .where(*_replayable(tenant), webhook_deliveries.c.webhook_id == webhook_id)
        .values(**_REPLAYED)
        .returning(webhook_deliveries.c.id)
    )
    replayed = [row.id for row in rows]
    if replayed:
        await audit.record(
            connection,
            tenant,
            actor,
            "webhook.replay",
            f"webhook:{webhook_id}",
            after={"deliveries": replayed},
        )
        await _announce(connection, tenant)
    return len(replayed)


# --- the dispatcher ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = 15
    timeout: float = 10.0
    """Seconds an attempt may take (connect, send, answer)."""
    backoff_base: float = 5.0
    """Seconds before the first retry; doubled for every failed attempt after it."""
    backoff_cap: float = 3600.0
    poll_interval: float = 1.0
    batch_size: int = 20
    """Deliveries claimed, and attempted concurrently, per round."""
    allow_private: bool = False
    """Attempt deliveries to hosts that resolve to loopback, private or link-local addresses."""
    lease: float | None = None
    """Seconds a claimed delivery is kept from other dispatchers while its attempt runs;
    default: the timeout and 30 s. A dispatcher that dies mid-attempt leaves it due when the
    lease ends."""

    @classmethod
    def of(cls, settings: Settings) -> DispatchSettings:
        return cls(
            max_attempts=settings.webhook_max_attempts,
            timeout=settings.webhook_timeout,
            backoff_base=settings.webhook_backoff_base,
            backoff_cap=settings.webhook_backoff_cap,
            poll_interval=settings.webhook_poll_interval,
            allow_private=settings.webhook_allow_private,
        )

    @property
    def lease_seconds(self) -> float:
        return self.lease if self.lease is not None else self.timeout + 30.0

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts: base * 2^(attempts-1), jittered
        by ±20 % (so failed receivers are not hit in lockstep), at most the cap."""
        delay = self.backoff_base * 2.0 ** max(attempts - 1, 0)
        return min(self.backoff_cap, min(self.backoff_cap, delay) * random.uniform(0.8, 1.2))


# Due deliveries of every tenant (the dispatcher is system work, as the login role); each is
# leased: its attempt is counted and it is not due again until the lease ends, by when this
# dispatcher has recorded the outcome (or died).
_CLAIM_SQL = """
WITH due AS (
    SELECT tenant_id, id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now() {only}
    ORDER BY next_attempt_at, id
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease)
FROM due, webhooks w
WHERE d.tenant_id = due.tenant_id AND d.id = due.id
  AND w.tenant_id = d.tenant_id AND w.id = d.webhook_id {only_d}
RETURNING d.tenant_id, d.id, d.event_id, d.payload::text AS body, d.attempts,
          w.url, w.secret, w.active
"""
_CLAIM = text(_CLAIM_SQL.format(only="", only_d=""))
# On Citus `FOR UPDATE SKIP LOCKED` is refused across shards: the claim is made per tenant
# (a single-shard statement), for the tenants with due deliveries, oldest due first.
_CLAIM_TENANT = text(
    _CLAIM_SQL.format(only="AND tenant_id = :t", only_d="AND d.tenant_id = :t AND w.tenant_id = :t")
)
_DUE_TENANTS = text(
    """
SELECT tenant_id FROM webhook_deliveries
WHERE status = 'pending' AND next_attempt_at <= now()
GROUP BY tenant_id ORDER BY min(next_attempt_at) LIMIT :batch
"""
)

# The outcome, only if the delivery is still this dispatcher's claim (its attempt count is the
# fencing token: a dispatcher that outlived its lease does not overwrite a newer claim's).
# Delivered or not are two statements: Citus refuses now() inside CASE on distributed tables
# (the delivery stayed pending and was sent again after every lease).
_OUTCOME_SQL = """
UPDATE webhook_deliveries
SET status = :status, last_status = :last_status, last_error = :last_error,
    next_attempt_at = now() + make_interval(secs => :delay),
    delivered_at = {delivered_at}
WHERE tenant_id = :t AND id = :id AND status = 'pending' AND attempts = :attempts
"""
_OUTCOME = text(_OUTCOME_SQL.format(delivered_at="NULL"))
_OUTCOME_DELIVERED = text(_OUTCOME_SQL.format(delivered_at="now()"))


@dataclass(frozen=True)
class _Claimed:
    tenant: str
    id: int
    event_id: str
    body: str
    attempts: int
    url: str
    secret: str
    active: bool


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    status: int | None
    error: str | None


class Dispatcher:
    """Sends due deliveries until stopped: `run(stopping)` in a task; setting ``stopping`` (or
    `stop()`) ends it gracefully: no new claims, and the attempts under way finish and are
    recorded. Any number may run, in one process or many: claims skip each other's rows."""

    def __init__(self, engine: AsyncEngine, settings: DispatchSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or DispatchSettings()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._listener: Any = None
        self.attempted = 0
        """Attempts made by this dispatcher (for tests and logs)."""

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; `run` returns once the attempts under way are recorded."""
        self._stopping.set()
        self._wake.set()

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        """Rounds until stopped: claim a batch, attempt it, record each outcome; then wait for
        a wake-up (an enqueue committed on any replica) or the poll interval. ``stopping`` is
        a stop request from outside, as `service.background` gives its tasks."""
        watcher = None
        if stopping is not None:

            async def watch(event: asyncio.Event) -> None:
                await event.wait()
                self.stop()

            watcher = asyncio.create_task(watch(stopping))
        # Imported by the worker that delivers: recording transitions (every run, the CLI's
        # included) only writes the outbox.
        import httpx

        try:
            async with httpx.AsyncClient(
                timeout=self.settings.timeout, follow_redirects=False
            ) as client:
                while not self._stopping.is_set():
                    await self._listen()
                    self._wake.clear()
                    try:
                        claimed = await self.run_once(client)
                    except Exception:  # a failed round is logged and retried, never fatal
                        log.exception("webhook dispatch round failed")
                        claimed = 0
                    if claimed < self.settings.batch_size and not self._stopping.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
        finally:
            if watcher is not None:
                watcher.cancel()
            await self._unlisten()

    async def run_once(self, client: httpx.AsyncClient) -> int:
        """One round: claim up to a batch of due deliveries, attempt them concurrently and
        record each outcome as it comes; returns how many were claimed."""
        claimed = await self._claim()
        outcomes = await asyncio.gather(
            *(self._attempt(client, delivery) for delivery in claimed), return_exceptions=True
        )
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # Its outcome is unrecorded: it is tried again when its lease ends.
                log.error("webhook delivery %s failed", delivery.id, exc_info=outcome)
        return len(claimed)

    async def _claim(self) -> list[_Claimed]:
        batch, lease = self.settings.batch_size, self.settings.lease_seconds
        async with self.engine.begin() as connection:
            if not await is_citus(connection):
                rows = await connection.execute(_CLAIM, {"batch": batch, "lease": lease})
                return [_Claimed(*row) for row in rows]
            tenants = list(await connection.scalars(_DUE_TENANTS, {"batch": batch}))
        claimed: list[_Claimed] = []
        for tenant in tenants:
            if len(claimed) >= batch:
                break
            async with self.engine.begin() as connection:
                rows = await connection.execute(
                    _CLAIM_TENANT, {"batch": batch - len(claimed), "lease": lease, "t": tenant}
                )
                claimed += [_Claimed(*row) for row in rows]
        return claimed

    async def _attempt(self, client: httpx.AsyncClient, delivery: _Claimed) -> None:
        # Here, not at the top: a run only writes the outbox, and `tierwise evaluate` starts
        # without prometheus_client.
        from service import metrics

        if not delivery.active:
            outcome = _Outcome(False, None, "the webhook was deleted")
        else:
            started = time.perf_counter()
            outcome = await self._post(client, delivery)
            metrics.WEBHOOK_DELIVERY_SECONDS.observe(time.perf_counter() - started)
        self.attempted += 1
        if outcome.delivered:
            status, delay = "delivered", 0.0
        elif not delivery.active or delivery.attempts >= self.settings.max_attempts:
            status, delay = "dead", 0.0
        else:
            status, delay = "pending", self.settings.backoff(delivery.attempts)
        metrics.WEBHOOK_DELIVERIES.labels(
            outcome={"delivered": "delivered", "pending": "failed", "dead": "gave_up"}[status]
        ).inc()
        if status != "delivered":
            log.info(
                "webhook delivery %s (%s) attempt %d failed: %s; %s",
                delivery.id,
                delivery.event_id,
                delivery.attempts,
                outcome.error,
                "dead" if status == "dead" else f"retry in {delay:.1f} s",
            )
        async with self.engine.begin() as connection:
            await connection.execute(
                _OUTCOME_DELIVERED if status == "delivered" else _OUTCOME,
                {
                    "status": status,
                    "last_status": outcome.status,
                    "last_error": outcome.error,
                    "delay": delay,
                    "t": delivery.tenant,
                    "id": delivery.id,
                    "attempts": delivery.attempts,
                },
            )

    async def _post(self, client: httpx.AsyncClient, delivery: _Claimed) -> _Outcome:
        import httpx  # imported already by `run`, which made the client

        body = delivery.body.encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: delivery.event_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(delivery.secret, timestamp, body),
        }
        try:
            # httpx's timeout bounds each phase; this bounds the whole attempt (the lease).
            async with asyncio.timeout(self.settings.timeout):
                if not self.settings.allow_private:
                    refused = await self._refused_host(delivery.url)
                    if refused is not None:
                        # How the service's resolver sees a name is not the tenant's to learn
                        # (an oracle into the internal DNS): the reason is for operators.
                        log.warning(
                            "webhook delivery %s of tenant %r: %s",
                            delivery.id,
                            delivery.tenant,
                            refused,
                        )
                        return _Outcome(False, None, DESTINATION_NOT_ALLOWED)
                response = await client.post(delivery.url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(False, None, f"timed out after {self.settings.timeout:g} s")
        except httpx.HTTPError as error:
            return _Outcome(False, None, f"{type(error).__name__}: {error}".rstrip(": "))
        if response.is_success:
            return _Outcome(True, response.status_code, None)
        text_ = response.text[:_ERROR_BODY_CHARS]
        return _Outcome(False, response.status_code, f"HTTP {response.status_code}: {text_}")

    async def _refused_host(self, url: str) -> str | None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (80 if parts.scheme == "http" else 443)
        try:
            address = await _private_address_of(host, port)
        except OSError as error:
            return f"cannot resolve {host}: {error}"
        if address is None:
            return None
        return f"refused: {host} resolves to the non-public address {address}"

    async def _listen(self) -> None:
        """LISTEN for committed enqueues on a dedicated connection; without one (it failed or
        was lost), the dispatcher polls, and tries again next round."""
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            listener = await asyncpg.connect(
                plain_url(self.engine.url), server_settings={"application_name": LISTENER_NAME}
            )
            await listener.add_listener(DELIVERIES_CHANNEL, self._heard)
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("webhook dispatcher cannot LISTEN (polling instead): %s", error)
            self._listener = None
            return
        self._listener = listener

    def _heard(self, _connection: object, _pid: int, _channel: str, _payload: str) -> None:
        self._wake.set()

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 5)
