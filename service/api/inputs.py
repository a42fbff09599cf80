"""Input types of the mutations, and their translation into ingest rows.

Types are checked by GraphQL; values (an implausible age, too many decimals) by ingest's own
field checks, which report per row so that one bad row never costs the others their write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.scalars import JSON

from service.data.records import Kind


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


@strawberry.input(description="An order; recording the same id again updates it.")
class OrderInput:
    id: strawberry.ID = strawberry.field(description="The order's id in your systems.")
    customer_id: strawberry.ID = strawberry.field(
        description="The customer's id (an unknown customer is created)."
    )
    ordered_at: dt.datetime = strawberry.field(description="When it was ordered.")
    amount: Decimal = strawberry.field(description="Amount, at most 4 decimal places.")
    currency: str | None = strawberry.field(default=None, description="Currency code.")
    category: str | None = strawberry.field(default=None, description="Product category.")
    channel: str | None = strawberry.field(default=None, description="Sales channel.")


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


@strawberry.input(
    description="A strategy; saving one of the same scheme, tier and name updates it."
)
class StrategyInput:
    scheme: str = strawberry.field(description="Key of a published scheme.")
    tier: str = strawberry.field(description="One of its tiers.")
    name: str = strawberry.field(description="Name, unique within the tier.")
    channel: str = strawberry.field(description="How it reaches the customer.")
    description: str = strawberry.field(default="", description="What it does, for people.")
    priority: int = strawberry.field(default=100, description="Lower comes first.")
    parameters: JSON | None = strawberry.field(default=None, description="Settings: JSON object.")
    active: bool = strawberry.field(default=True, description="Inactive ones are not recommended.")


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
