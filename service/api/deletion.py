"""Deleting orders and events (`write_data`: a feed takes back a mistake) and erasing
customers (`erase_customers`, admin only: final, and it takes a customer's whole history).
The same operations as `tierwise delete`, audited as the caller's; mixed into the Mutation
root."""

from __future__ import annotations

from typing import Annotated

import strawberry

from service.access.auth import Permission
from service.api import limits
from service.api.context import Info
from service.api.fields import arg, resolver
from service.data.kinds import Kind
from service.engine import deletion


@strawberry.type(description="What a deletion or an erasure did.")
class DeletionResult:
    requested: int = strawberry.field(description="Distinct ids given.")
    deleted: int = strawberry.field(description="Of those, the ones found and removed.")
    not_found: int = strawberry.field(description="Ids that named nothing (not an error).")
    tier_changes: int = strawberry.field(
        description="Tier changes the deletion caused (0 for an erasure, which records none)."
    )

    @classmethod
    def of(cls, result: deletion.Deletion) -> DeletionResult:
        return cls(
            requested=result.requested,
            deleted=result.deleted,
            not_found=result.not_found,
            tier_changes=result.tier_changes,
        )


async def _delete(info: Info, kind: Kind, ids: list[strawberry.ID]) -> DeletionResult:
    context = info.context
    limits.ingest_rows(context.settings, len(ids))
    result = await deletion.delete(
        context.engine, context.tenant, kind, [str(id_) for id_ in ids], actor=context.caller.actor
    )
    return DeletionResult.of(result)


@strawberry.type
class DeletionMutation:
    @resolver(
        "Delete orders by id; the customers' rollups and tiers follow at once, each change "
        "recorded and announced on tierChanged. Audited with the counts.",
        needs=Permission.write_data,
    )
    async def delete_orders(
        self, info: Info, ids: Annotated[list[strawberry.ID], arg("Order ids.")]
    ) -> DeletionResult:
        return await _delete(info, Kind.orders, ids)

    @resolver(
        "Delete behaviour events by id; tiers follow at once, as for orders.",
        needs=Permission.write_data,
    )
    async def delete_events(
        self, info: Info, ids: Annotated[list[strawberry.ID], arg("Event ids.")]
    ) -> DeletionResult:
        return await _delete(info, Kind.events, ids)

    @resolver(
        "Erase customers by id: their profile, orders, events, predictions, tiers, history and "
        "webhook deliveries go, in one transaction, for good. The audit log keeps one "
        "`customer.erase` entry each (who, when), naming the customer only by a keyed digest.",
        needs=Permission.erase_customers,
    )
    async def erase_customers(
        self, info: Info, ids: Annotated[list[strawberry.ID], arg("Customer ids.")]
    ) -> DeletionResult:
        return await _delete(info, Kind.customers, ids)
