"""The audit trail: every change to rules, strategies, keys and webhooks, and every deletion
and erasure, with who made it, when, what it was before and after, and from where. Rows are
only ever added (the table's trigger refuses UPDATE and DELETE), in the same transaction as
the change they record."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.tables import audit_log


@dataclass(frozen=True)
class Actor:
    """Who is making a change: the verified token's subject and role, and where from."""

    subject: str
    role: str
    # The client's address for API requests, "cli" for the command line.
    source: str
    request_id: str | None = None


def command_line_actor() -> Actor:
    """Whoever runs the command line: it acts with the database's own rights, as an admin."""
    return Actor(f"cli:{getpass.getuser()}", "admin", "cli")


# Changes the service makes on no one's request (the demo's templates, tests' fixtures).
SERVICE = Actor("tierwise", "admin", "service")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    target: str
    before: Any
    after: Any
    source: str
    request_id: str | None


async def record(
    connection: AsyncConnection,
    tenant: str,
    actor: Actor,
    action: str,
    target: str,
    *,
    before: Any = None,
    after: Any = None,
) -> None:
    """Add one entry; ``before``/``after`` are JSON-able (None: did not exist / no longer does)."""
    await connection.execute(
        audit_log.insert().values(
            tenant_id=tenant,
            actor=actor.subject,
            role=actor.role,
            action=action,
            target=target,
            before=before,
            after=after,
            source=actor.source,
            request_id=actor.request_id,
        )
    )


async def record_each(
    connection: AsyncConnection, tenant: str, actor: Actor, action: str, targets: Sequence[str]
) -> None:
    """One entry of ``action`` per target, in one statement (an erasure of many customers)."""
    if not targets:
        return
    await connection.execute(
        audit_log.insert(),
        [
            {
                "tenant_id": tenant,
                "actor": actor.subject,
                "role": actor.role,
                "action": action,
                "target": target,
                "source": actor.source,
                "request_id": actor.request_id,
            }
            for target in targets
        ],
    )


async def entries(
    connection: AsyncConnection,
    tenant: str,
    *,
    action: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Sequence[AuditEntry]:
    """The newest entries first; ``before_id`` pages on from an earlier page's last id."""
    query = select(audit_log).where(audit_log.c.tenant_id == tenant)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    rows = await connection.execute(query.order_by(audit_log.c.id.desc()).limit(limit))
    return [
        AuditEntry(
            row.id,
            row.at,
            row.actor,
            row.role,
            row.action,
            row.target,
            row.before,
            row.after,
            row.source,
            row.request_id,
        )
        for row in rows
    ]
