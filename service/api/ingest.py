"""Ingest: writing customers, orders and events (`service.data.ingest`), idempotent on ids,
with each bad row reported and the tiers moved at once.

Types are checked by GraphQL; values (an implausible age, too many decimals) by ingest's own
field checks, which report per row so that one bad row never costs the others their write.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.scalars import JSON

from service.access.auth import Permission
from service.api import limits
from service.api.context import Info
from service.api.fields import arg, resolver
from service.data.ingest import import_rows
from service.data.kinds import Kind
from service.engine import evaluation

T = TypeVar("T")


@strawberry.input(description="A customer's profile; replaces the stored one of the same id.")
class CustomerInput:
    id: strawberry.ID = strawberry.field(description="The customer's id in your systems.")
    name: str | None = strawberry.field(default=None, description="Full name.")
    email: str | None = strawberry.field(default=None, description="Email address.")
    phone: str | None = strawberry.field(default=None, description="Phone number.")
    age: int | None = strawberry.field(default=None, description="Age in years.")
    gender: str | None = strawberry.field(default=None, description="Gender.")
    occupation: str | None = strawberry.field(default=None, description="Occupation.")
    region: str | None = strawberry.field(default=None, description="Region.")
    industry: str | None = strawberry.field(default=None, description="Industry.")
    company_size: int | None = strawberry.field(default=None, description="Employees.")
    registered_at: dt.datetime | None = strawberry.field(
        default=None, description="Registration time."
    )
    attributes: JSON | None = strawberry.field(
        default=None, description="Free-form attributes: a JSON object."
    )


@strawberry.enum(description="Whether an order counts: cancelled orders count nowhere.")
class OrderStatus(enum.Enum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@strawberry.input(
    description="An order, or a refund (a negative amount, `refundOf` naming the order it "
    "refunds); recording the same id again updates it."
)
class OrderInput:
    id: strawberry.ID = strawberry.field(description="The order's id in your systems.")
    customer_id: strawberry.ID = strawberry.field(
        description="The customer's id (an unknown customer is created)."
    )
    ordered_at: dt.datetime = strawberry.field(description="When it was ordered.")
    amount: Decimal = strawberry.field(description="Amount, at most 4 decimal places.")
    currency: str | None = strawberry.field(
        default=None,
        description="ISO 4217 code of the amount (USD); omitted: the tenant's reporting currency. "
        "Converted to it at the tenant's rate in force on `orderedAt` (`tierwise import rates`); "
        "without one, the row is rejected, naming currency and date.",
    )
    category: str | None = strawberry.field(default=None, description="Product category.")
    channel: str | None = strawberry.field(default=None, description="Sales channel.")
    status: OrderStatus | None = strawberry.field(
        default=None, description="COMPLETED (the default) or CANCELLED."
    )
    refund_of: strawberry.ID | None = strawberry.field(
        default=None,
        description="For a refund: the id of the order it refunds (the amount is stored "
        "negative whichever sign it is given).",
    )


@strawberry.input(description="A behaviour event (login, page view, complaint, NPS answer...).")
class EventInput:
    customer_id: strawberry.ID = strawberry.field(
        description="The customer's id (an unknown customer is created)."
    )
    type: str = strawberry.field(description="Kind of event, e.g. `login` or `nps`.")
    occurred_at: dt.datetime = strawberry.field(description="When it happened.")
    id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The event's id; without one, an event of the same content is one event.",
    )
    value: Decimal | None = strawberry.field(default=None, description="E.g. the NPS score.")
    properties: JSON | None = strawberry.field(
        default=None, description="Free-form properties: a JSON object."
    )


# Ingest's field names -> the inputs' GraphQL names, for per-row errors.
FIELD_NAMES: Mapping[Kind, Mapping[str, str]] = {
    Kind.customers: {
        "customer_id": "id",
        "company_size": "companySize",
        "registered_at": "registeredAt",
    },
    Kind.orders: {
        "order_id": "id",
        "customer_id": "customerId",
        "ordered_at": "orderedAt",
        "refund_of": "refundOf",
    },
    Kind.events: {"event_id": "id", "customer_id": "customerId", "occurred_at": "occurredAt"},
}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def customer_row(item: CustomerInput) -> dict[str, Any]:
    return {
        "customer_id": str(item.id),
        "name": item.name,
        "email": item.email,
        "phone": item.phone,
        "age": item.age,
        "gender": item.gender,
        "occupation": item.occupation,
        "region": item.region,
        "industry": item.industry,
        "company_size": item.company_size,
        "registered_at": _plain(item.registered_at),
        "attributes": item.attributes,
    }


def order_row(item: OrderInput) -> dict[str, Any]:
    return {
        "order_id": str(item.id),
        "customer_id": str(item.customer_id),
        "ordered_at": _plain(item.ordered_at),
        "amount": item.amount,
        "currency": item.currency,
        "category": item.category,
        "channel": item.channel,
        "status": None if item.status is None else item.status.value,
        "refund_of": None if item.refund_of is None else str(item.refund_of),
    }


def event_row(item: EventInput) -> dict[str, Any]:
    return {
        "event_id": None if item.id is None else str(item.id),
        "customer_id": str(item.customer_id),
        "type": item.type,
        "occurred_at": _plain(item.occurred_at),
        "value": item.value,
        "properties": item.properties,
    }


@strawberry.type(description="A row a mutation could not take, and why.")
class RowError:
    row: int = strawberry.field(description="Index of the row in the input list, from 0.")
    field: str | None = strawberry.field(description="The input field at fault, if one is.")
    message: str = strawberry.field(description="What is wrong with it.")


@strawberry.type(
    description="What an ingest mutation did: the valid rows are written (tiers updated "
    "incrementally), the invalid ones reported and not written at all."
)
class IngestResult:
    received: int = strawberry.field(description="Rows given.")
    inserted: int = strawberry.field(description="New rows written.")
    updated: int = strawberry.field(description="Existing rows (same id) changed.")
    unchanged: int = strawberry.field(description="Existing rows given again as they were.")
    rejected: int = strawberry.field(description="Rows not written: see `errors`.")
    customers_created: int = strawberry.field(
        description="Customers created because an order or event named an unknown id."
    )
    tier_changes: int = strawberry.field(description="Tier changes the new data caused.")
    errors: list[RowError] = strawberry.field(description="Every problem, by row and field.")


async def _ingest(
    info: Info, kind: Kind, items: Sequence[T], to_row: Callable[[T], Mapping[str, Any]]
) -> IngestResult:
    context = info.context
    limits.ingest_rows(context.settings, len(items))
    changes: list[int] = []

    async def refresh(connection: AsyncConnection, tenant: str) -> None:
        # Tiers follow the new data in the same transaction; each change is also announced
        # to tierChanged subscribers when it commits.
        changes.append(await evaluation.refresh_affected(connection, tenant, trigger="api"))

    result, bad = await import_rows(
        context.engine,
        kind,
        context.tenant,
        ((index, to_row(item)) for index, item in enumerate(items)),
        source=f"{kind} input",
        skip_bad=True,
        after_load=refresh,
    )
    names = FIELD_NAMES[kind]
    return IngestResult(
        received=len(items),
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        rejected=len(bad),
        customers_created=result.customers_created,
        tier_changes=sum(changes),
        errors=[
            RowError(
                row=error.line,
                field=None if error.field is None else names.get(error.field, error.field),
                message=error.message,
            )
            for row in bad
            for error in row.errors
        ],
    )


@strawberry.type
class IngestMutation:
    @resolver(
        "Create or replace customers by id (idempotent). Valid rows are written even when "
        "others are not; each problem is reported with its row and field.",
        needs=Permission.write_data,
    )
    async def upsert_customers(
        self,
        info: Info,
        customers: Annotated[list[CustomerInput], arg("Checked row by row.")],
    ) -> IngestResult:
        return await _ingest(info, Kind.customers, customers, customer_row)

    @resolver(
        "Record orders by id (idempotent); the customers' tiers follow at once, and each "
        "change is announced on tierChanged.",
        needs=Permission.write_data,
    )
    async def record_orders(
        self, info: Info, orders: Annotated[list[OrderInput], arg("Checked row by row.")]
    ) -> IngestResult:
        return await _ingest(info, Kind.orders, orders, order_row)

    @resolver(
        "Record behaviour events (idempotent by id, or by content without one); tiers follow.",
        needs=Permission.write_data,
    )
    async def record_events(
        self, info: Info, events: Annotated[list[EventInput], arg("Checked row by row.")]
    ) -> IngestResult:
        return await _ingest(info, Kind.events, events, event_row)
