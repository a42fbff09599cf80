"""Advisory locks: the one place their keys are made.

Postgres advisory locks serialise work that must not overlap, across processes and replicas,
without a table of its own. Every lock here is transaction-scoped (``pg_advisory_xact_lock``):
it is released when the transaction that took it ends, so a crash never leaves one behind.

A key is the first 8 bytes of BLAKE2b over ``tierwise-<purpose>:<part>:<part>...``, read as a
signed 64-bit integer (Postgres' ``bigint`` key space): stable across processes, Python
versions and Postgres versions, and the purposes cannot collide with each other.
"""

from __future__ import annotations

import enum
import hashlib

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection


class Purpose(enum.StrEnum):
    """What a lock serialises, with the parts that name one lock of the kind."""

    migrate = "migrate"  # replicas starting together migrate in turn (no parts)
    run = "run"  # runs and incremental updates of one scheme (tenant, scheme)
    publish = "publish"  # publishers of one scheme: versions numbered without gaps (tenant, scheme)
    ingest = "ingest"  # loads of one tenant: inserts of new ids cannot race (tenant)
    predict = "predict"  # fits of one tenant's models: versions without gaps (tenant)


def key(purpose: Purpose, *parts: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of ``purpose`` for ``parts``."""
    name = ":".join((f"tierwise-{purpose}", *parts))
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_WAIT = text("SELECT pg_advisory_xact_lock(:key)")
_TRY = text("SELECT pg_try_advisory_xact_lock(:key)")


async def acquire(connection: AsyncConnection, purpose: Purpose, *parts: str) -> None:
    """Wait for the lock, held until the connection's transaction ends."""
    await connection.execute(_WAIT, {"key": key(purpose, *parts)})


async def try_acquire(connection: AsyncConnection, purpose: Purpose, *parts: str) -> bool:
    """Take the lock if it is free (held until the transaction ends); False if it is not."""
    return bool(await connection.scalar(_TRY, {"key": key(purpose, *parts)}))


def acquire_sync(connection: Connection, purpose: Purpose, *parts: str) -> None:
    """`acquire` on a synchronous connection (alembic's, for migrations)."""
    connection.execute(_WAIT, {"key": key(purpose, *parts)})
