"""Deleting orders and events, and erasing customers.

- Deleting orders or events removes them by their ids; the rollups of the customers who had
  them are recomputed and their tiers follow in the same transaction, each change recorded as
  a transition (trigger ``delete``), as an import's incremental update does. Schemes that rank
  customers against each other follow at their next full run.
- Erasing a customer removes everything Tierwise holds of them, in one transaction: profile,
  orders, events, rollup, predictions, memberships, transitions and the webhook outbox rows
  naming them (pending, delivered or dead). The audit log keeps that an erasure happened, by
  whom and when, with the customer only as `erasure_digest` of their id, never in clear.

Both take the tenant's load lock, so no import runs in between. An erasure also takes the run
lock of every scheme: a run that read the customer before the erasure committed could
otherwise write their tiers back after it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.access import audit
from service.access.audit import Actor
from service.data import rollups
from service.data.kinds import Kind
from service.db import locks
from service.db.database import ANALYZE_AFTER_ROWS, tenant_transaction
from service.db.tables import tenants
from service.engine import evaluation
from service.engine import schemes as published

TRIGGER = "delete"
ERASE_ACTION = "customer.erase"
DIGEST_PREFIX = "hmac-sha256:"

# What an erasure removes, in the order it is reported.
ERASED_ROWS = ("orders", "events", "memberships", "transitions", "webhook_deliveries")


@dataclass(frozen=True)
class Deletion:
    kind: Kind
    requested: int
    """Distinct ids named."""
    deleted: int
    """Of those, the rows found and removed (customers erased)."""
    tier_changes: int = 0
    """Transitions recorded (deleting orders or events; an erasure records none)."""
    removed: dict[str, int] = field(default_factory=dict)
    """An erasure's removed rows of each of `ERASED_ROWS`."""

    @property
    def not_found(self) -> int:
        return self.requested - self.deleted

    def summary(self) -> str:
        verb = "erased" if self.kind is Kind.customers else "deleted"
        parts = [f"{self.requested} ids read", f"{self.deleted} {self.kind} {verb}"]
        if self.removed:
            parts[-1] += " (with " + ", ".join(f"{n} {t}" for t, n in self.removed.items()) + ")"
        parts.append(f"{self.not_found} not found")
        if self.kind is not Kind.customers:
            parts.append(f"{self.tier_changes} tier changes")
        return ", ".join(parts)


def erasure_digest(key: bytes, customer_id: str) -> str:
    """What stands for an erased customer in the audit log: ``hmac-sha256:`` and the hex
    HMAC-SHA256 (RFC 2104) of their id (UTF-8) under the tenant's erasure key. Keyed, because
    customer ids are few and guessable (C000042): a plain hash of one is found by trying them
    all; without the key, which no API returns, a reader of the audit log cannot."""
    return DIGEST_PREFIX + hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()


async def delete(
    engine: AsyncEngine, tenant: str, kind: Kind, ids: Sequence[str], *, actor: Actor
) -> Deletion:
    """Delete the orders or events, or erase the customers, of these ids (ids that name
    nothing are counted, not refused); audited as ``actor``'s."""
    if kind is Kind.customers:
        return await erase_customers(engine, tenant, ids, actor=actor)
    return await delete_facts(engine, tenant, kind, ids, actor=actor)


async def _stage_ids(connection: AsyncConnection, ids: Sequence[str]) -> int:
    """The distinct ``ids`` into the temporary table ``deletion_ids``; returns their number."""
    await connection.execute(
        text('CREATE TEMP TABLE deletion_ids (id text COLLATE "C" PRIMARY KEY) ON COMMIT DROP')
    )
    distinct = list(dict.fromkeys(ids))
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None, "an open connection has a driver connection"
    await driver.copy_records_to_table(
        "deletion_ids", records=[(id_,) for id_ in distinct], columns=["id"]
    )
    if len(distinct) >= ANALYZE_AFTER_ROWS:
        await connection.execute(text("ANALYZE deletion_ids"))
    return len(distinct)


async def _lock_loads(connection: AsyncConnection, tenant: str) -> None:
    await locks.acquire(connection, locks.Purpose.ingest, tenant)


_DELETE_FACTS = """
WITH gone AS (
    DELETE FROM {table} x USING deletion_ids d
    WHERE x.tenant_id = :t AND x.external_id = d.id
    RETURNING x.customer_id
),
touched AS (INSERT INTO affected_customers SELECT DISTINCT customer_id, true FROM gone)
SELECT count(*) FROM gone
"""


async def delete_facts(
    engine: AsyncEngine, tenant: str, kind: Kind, ids: Sequence[str], *, actor: Actor
) -> Deletion:
    """Delete the orders or events of these ids; rollups and tiers follow in the same
    transaction, each tier change recorded. Audited (``orders.delete``, ``events.delete``)
    with the counts, not the ids: the audit log outlives an erasure of their customer."""
    assert kind is not Kind.customers
    async with tenant_transaction(engine, tenant) as connection:
        await _lock_loads(connection, tenant)
        requested = await _stage_ids(connection, ids)
        await connection.execute(text(rollups.CREATE_AFFECTED))
        deleted = int(
            (
                await connection.execute(text(_DELETE_FACTS.format(table=kind)), {"t": tenant})
            ).scalar_one()
        )
        changes = 0
        if deleted:
            if kind is Kind.orders:
                await rollups.refresh_affected(connection, tenant)
            changes = await evaluation.refresh_affected(connection, tenant, trigger=TRIGGER)
        result = Deletion(kind, requested, deleted, changes)
        await audit.record(
            connection,
            tenant,
            actor,
            f"{kind}.delete",
            str(kind),
            after={"requested": requested, "deleted": deleted, "tier_changes": changes},
        )
    return result


# The tables whose rows name a customer by internal id (rollups and predictions are not
# reported: one row per customer each, gone with the customer).
_BY_CUSTOMER = (
    "orders",
    "events",
    "customer_metrics",
    "customer_predictions",
    "memberships",
    "transitions",
    "tier_holds",
)

_GONE_BY_CUSTOMER = "\n".join(
    f"{table}_gone AS (DELETE FROM {table} x USING erased e"
    " WHERE x.tenant_id = :t AND x.customer_id = e.id RETURNING 1),"
    for table in _BY_CUSTOMER
)

# Every row that names an erased customer: by internal id, and in the webhook outbox by the
# external id its payloads carry; then the customer.
_ERASE = f"""
WITH erased AS MATERIALIZED (
    SELECT c.id, c.external_id FROM customers c JOIN deletion_ids d ON d.id = c.external_id
    WHERE c.tenant_id = :t
),
{_GONE_BY_CUSTOMER}
webhook_deliveries_gone AS (
    DELETE FROM webhook_deliveries x USING erased e
    WHERE x.tenant_id = :t AND x.payload ->> 'customer' = e.external_id
    RETURNING 1
),
customers_gone AS (
    DELETE FROM customers x USING erased e WHERE x.tenant_id = :t AND x.id = e.id
    RETURNING x.external_id
)
SELECT (SELECT coalesce(array_agg(external_id), '{{}}') FROM customers_gone) AS erased,
       {", ".join(f"(SELECT count(*) FROM {name}_gone) AS {name}" for name in ERASED_ROWS)}
"""


async def erase_customers(
    engine: AsyncEngine, tenant: str, ids: Sequence[str], *, actor: Actor
) -> Deletion:
    """Erase the customers of these ids and everything that names them, in one transaction;
    one ``customer.erase`` audit entry per erased customer, its target ``customer:`` and
    `erasure_digest` of the id. Ranked schemes follow at their next full run."""
    async with tenant_transaction(engine, tenant) as connection:
        await _lock_loads(connection, tenant)
        for scheme in await published.current(connection, tenant):
            await locks.acquire(connection, locks.Purpose.run, tenant, scheme.key)
        requested = await _stage_ids(connection, ids)
        row = (await connection.execute(text(_ERASE), {"t": tenant})).one()
        erased: list[str] = list(row.erased)
        if erased:
            key = await _erasure_key(connection, tenant)
            await audit.record_each(
                connection,
                tenant,
                actor,
                ERASE_ACTION,
                [f"customer:{erasure_digest(key, customer)}" for customer in erased],
            )
    removed = {name: int(getattr(row, name)) for name in ERASED_ROWS}
    return Deletion(Kind.customers, requested, len(erased), removed=removed)


async def _erasure_key(connection: AsyncConnection, tenant: str) -> bytes:
    """The tenant's erasure key, made (256 random bits) at its first erasure."""
    key = await connection.scalar(
        update(tenants)
        .where(tenants.c.id == tenant)
        .values(erasure_key=func.coalesce(tenants.c.erasure_key, secrets.token_bytes(32)))
        .returning(tenants.c.erasure_key)
    )
    assert key is not None, "a tenant with customers has its row"
    return bytes(key)
