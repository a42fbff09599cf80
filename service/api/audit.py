"""The audit log over GraphQL: read-only, admin only (`read_audit`). Mixed into the Query root;
there is deliberately no mutation (entries are never edited or deleted)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from service.access import audit
from service.access.auth import Permission
from service.api.access import Role
from service.api.context import Info
from service.api.fields import arg, known_id, resolver, shown_id
from service.api.limits import page_size
from service.db.ids import Ids, RowKind


@strawberry.type(description="One change to rules, strategies, keys or webhooks.")
class AuditEntry:
    id: strawberry.ID = strawberry.field(description="Opaque; page with `before`.")
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
    def of(cls, entry: audit.AuditEntry, ids: Ids) -> AuditEntry:
        return cls(
            id=shown_id(ids, RowKind.audit_entry, entry.id),
            at=entry.at,
            actor=entry.actor,
            role=Role(entry.role),
            action=entry.action,
            target=_shown_target(entry.target, ids),
            before=_shown_thing(entry.action, entry.before, ids),
            after=_shown_thing(entry.action, entry.after, ids),
            source=entry.source,
            request_id=entry.request_id,
        )


# Entries keep the internal ids of the rows they name (written in the engine, which knows no
# tenant's ids; older entries too): they are shown as the ids the API gives out for those rows.
_WEBHOOK_TARGET = re.compile(r"webhook:([0-9]+)")


def _shown_target(target: str, ids: Ids) -> str:
    match = _WEBHOOK_TARGET.fullmatch(target)
    if match is None:
        return target
    return f"webhook:{ids.encode(RowKind.webhook, int(match[1]))}"


def _shown_thing(action: str, thing: Any, ids: Ids) -> Any:
    """``thing`` (an entry's before or after) with the ids of strategies and deliveries in it
    shown as the API's."""
    if not isinstance(thing, dict):
        return thing
    shown = dict(thing)
    if action.startswith("strategy.") and isinstance(shown.get("id"), int):
        shown["id"] = ids.encode(RowKind.strategy, shown["id"])
    deliveries = shown.get("deliveries")
    if action == "webhook.replay" and isinstance(deliveries, list):
        shown["deliveries"] = [
            ids.encode(RowKind.delivery, n) if isinstance(n, int) else n for n in deliveries
        ]
    return shown


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
        ids = await context.ids()
        before_id = None if before is None else known_id(ids, RowKind.audit_entry, before, "before")
        async with context.transaction() as connection:
            found = await audit.entries(
                connection, context.tenant, action=action, limit=first, before_id=before_id
            )
        return [AuditEntry.of(entry, ids) for entry in found]
