"""What a compiled scheme reads from: the tenant's customers, orders, events and current
memberships as the compiler's `dsl.Sources`, built in one place for every caller (full runs,
incremental updates, backtests, analytics, the API's loaders and `where` filters)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, column, select, table

from dsl import Sources
from service.db.tables import customers, events, memberships, orders

AFFECTED: Select[Any] = select(column("customer_id")).select_from(table("affected_customers"))
"""The customers of the ``affected_customers`` temporary table that ingest fills."""


def tenant_sources(
    tenant: str,
    *,
    customer_ids: Sequence[int] | Select[Any] | None = None,
    registered_before: dt.datetime | None = None,
) -> Sources:
    """The tenant's rows as the compiler's sources.

    ``customer_ids`` (a list of ids, or a select of one ``customer_id`` column such as
    `AFFECTED`) keeps only those customers, filtered in every source so that Postgres reads
    just their rows: right for every metric but the population ones (ranks, percentiles),
    which compare a customer with the whole tenant. ``registered_before`` (a backtest's date)
    leaves out the customers who registered later.
    """
    customer_rows = select(customers).where(customers.c.tenant_id == tenant)
    order_rows = select(orders).where(orders.c.tenant_id == tenant)
    event_rows = select(events).where(events.c.tenant_id == tenant)
    member_rows = select(
        memberships.c.customer_id, memberships.c.scheme_key.label("scheme"), memberships.c.tier
    ).where(memberships.c.tenant_id == tenant)
    if registered_before is not None:
        customer_rows = customer_rows.where(
            (customers.c.registered_at < registered_before) | customers.c.registered_at.is_(None)
        )
    if customer_ids is not None:
        customer_rows = customer_rows.where(customers.c.id.in_(customer_ids))
        order_rows = order_rows.where(orders.c.customer_id.in_(customer_ids))
        event_rows = event_rows.where(events.c.customer_id.in_(customer_ids))
        member_rows = member_rows.where(memberships.c.customer_id.in_(customer_ids))
    return Sources(
        customer_rows.subquery("customers"),
        order_rows.subquery("orders"),
        event_rows.subquery("events"),
        member_rows.subquery("memberships"),
    )
