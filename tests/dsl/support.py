"""Shared helpers of the dsl tests: putting customers in Postgres and running compiled SQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Select, Table, Text, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl.compiler import Sources
from dsl.evaluator import CustomerFacts
from service.db.tables import customers, events, orders

AS_OF = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

# Memberships come with the engine; tests use a temporary table of the same shape.
memberships = Table(
    "dsl_memberships",
    MetaData(),
    Column("customer_id", BigInteger),
    Column("scheme", Text),
    Column("tier", Text),
)

PROFILE_FIELDS = (
    "age",
    "gender",
    "occupation",
    "region",
    "industry",
    "company_size",
    "registered_at",
)


def sources(tenant: str) -> Sources:
    def of(table: Table) -> Any:
        return select(table).where(table.c.tenant_id == tenant).subquery(table.name)

    return Sources(of(customers), of(orders), of(events), memberships)


def _json(value: object) -> object:
    # Decimals go to JSON as numbers with the same digits.
    return json.loads(json.dumps(value, default=lambda d: float(d)))


async def insert(
    connection: AsyncConnection, tenant: str, people: Sequence[CustomerFacts]
) -> list[int]:
    """Insert customers with their orders, events and memberships; returns their ids."""
    await connection.execute(
        text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS dsl_memberships "
            "(customer_id bigint, scheme text, tier text)"
        )
    )
    ids: list[int] = []
    for n, person in enumerate(people):
        row = {name: person.profile.get(name) for name in PROFILE_FIELDS}
        row["attributes"] = _json(person.profile.get("attributes") or {})
        customer_id = (
            await connection.execute(
                customers.insert()
                .values(tenant_id=tenant, external_id=f"c{n}", **row)
                .returning(customers.c.id)
            )
        ).scalar_one()
        ids.append(customer_id)
        if person.orders:
            await connection.execute(
                orders.insert(),
                [
                    {
                        "tenant_id": tenant,
                        # Ids are the customer's own (`o1`), made unique in the tenant.
                        "external_id": f"c{n}-{o.order_id or f'o{k}'}",
                        "customer_id": customer_id,
                        "amount": o.amount,
                        "ordered_at": o.ordered_at,
                        "category": o.category,
                        "channel": o.channel,
                        "currency": o.currency,
                        "original_amount": o.amount
                        if o.original_amount is None
                        else o.original_amount,
                        "status": o.status,
                        "refund_of": None if o.refund_of is None else f"c{n}-{o.refund_of}",
                    }
                    for k, o in enumerate(person.orders)
                ],
            )
        if person.events:
            await connection.execute(
                events.insert(),
                [
                    {
                        "tenant_id": tenant,
                        "external_id": f"c{n}e{k}",
                        "customer_id": customer_id,
                        "type": e.type,
                        "occurred_at": e.occurred_at,
                        "value": e.value,
                    }
                    for k, e in enumerate(person.events)
                ],
            )
        for scheme, tier in person.memberships.items():
            await connection.execute(
                memberships.insert().values(customer_id=customer_id, scheme=scheme, tier=tier)
            )
    return ids


async def rows(connection: AsyncConnection, statement: Select[Any]) -> list[Any]:
    return list((await connection.execute(statement)).all())


def money(value: str) -> Decimal:
    return Decimal(value)
