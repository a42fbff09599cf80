"""The audit log over GraphQL: read-only, admin only (`read_audit`). Mixed into the Query root;
there is deliberately no mutation (entries are never edited or deleted)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from service.access import audit
from service.access.auth import Permission
from service.api.access import Role
from service.api.context import Info
from service.api.fields import arg, known_id, resolver
from service.api.limits import page_size


@strawberry.type(description="One change to rules, strategies, keys or webhooks.")
class AuditEntry:
    id: strawberry.ID = strawberry.field(description="Increasing with time; page with `before`.")
    at: dt.datetime = strawberry.field(description="When the change was committed.")
    actor: str = strawberry.field(
        description="Who: the token's subject, `key:<key id>`, or `cli:<os user>`."
    )
    role: Role = strawberry.field(description="The role the actor acted in.")
    action: str = strawberry.field(
        description="What, e.g. `scheme.publish`, `strategy.update`, `key.revoke`, "
        "`webhook.create`."
    )
    target: str = strawberry.field(
        description="What was changed: a scheme key, `scheme/tier/name` of a strategy, a key "
        "or webhook id."
    )
    before: JSON | None = strawberry.field(description="The thing before; null if it was new.")
    after: JSON | None = strawberry.field(description="The thing after; null if deleted.")
    source: str = strawberry.field(
        description="From where: the client's address, or `cli` for the command line."
    )
    request_id: str | None = strawberry.field(description="The request's X-Request-ID.")

    @classmethod
    def of(cls, entry: audit.AuditEntry) -> AuditEntry:
        return cls(
            id=strawberry.ID(str(entry.id)),
            at=entry.at,
            actor=entry.actor,
            role=Role(entry.role),
            action=entry.action,
            target=entry.target,
            before=entry.before,
            after=entry.after,
            source=entry.source,
            request_id=entry.request_id,
        )


@strawberry.type
class AuditQuery:
    @resolver(
        "Changes to rules, strategies, keys and webhooks, newest first.",
        needs=Permission.read_audit,
    )
    async def audit_log(
        self,
        info: Info,
        action: Annotated[str | None, arg("Only this action, e.g. `scheme.publish`.")] = None,
        first: Annotated[int, arg("How many (at most TIERWISE_MAX_PAGE_SIZE).")] = 50,
        before: Annotated[
            strawberry.ID | None, arg("Older than this entry id (the last of a page).")
        ] = None,
    ) -> list[AuditEntry]:
        context = info.context
        page_size(context.settings, "first", first)
        before_id = None if before is None else known_id(before, "audit entry")
        async with context.transaction() as connection:
            found = await audit.entries(
                connection, context.tenant, action=action, limit=first, before_id=before_id
            )
        return [AuditEntry.of(entry) for entry in found]
