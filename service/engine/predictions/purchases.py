"""What the models see of a tenant's orders: purchase occasions and the per-customer summary,
computed set-based inside Postgres.

`purchases` is THE ONE PLACE here that says which order rows are purchases and what each is
worth net; it takes both from the metric catalog's `classified_orders`, so the models count
purchases as `frequency` does (cancelled orders, refunds and orders refunded in full are not
purchases) and value each net of the refunds linked to it. Everything else here (occasions,
summaries, holdout counts) is built on it.

The summary follows the convention of the `lifetimes` package, in days:

- a purchase occasion is a UTC calendar day with at least one purchase (several orders on one
  day are one occasion, worth their summed net amount);
- x = occasions after the first; t_x = days from the first occasion to the last;
- T = whole days from the start of the first occasion's day to the evaluation time, rounded
  down (as `recency` and `tenure` are); only purchases strictly before the evaluation time
  count, so a purchase on the evaluation day before its time gives t_x = T;
- the mean repeat value = the mean net amount of the occasions after the first (null for
  x = 0).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Select,
    Subquery,
    and_,
    cast,
    func,
    literal,
    over,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from dsl.catalog import classified_orders, days_between_sql
from service.engine.sources import tenant_sources

CustomerIds = Sequence[int] | Select[Any] | None


def purchases(
    tenant: str,
    *,
    before: dt.datetime,
    since: dt.datetime | None = None,
    customer_ids: CustomerIds = None,
) -> Subquery:
    """The tenant's purchases with ``since <= ordered_at < before``: one row per purchase,
    columns customer_id, ordered_at and net_amount (currency, exact numeric).

    A purchase is what `frequency` counts (`classified_orders`, with the refunds dated before
    ``before``); ``net_amount`` is its amount less the refunds linked to it. Refunds linked to
    no order lower `monetary` but no purchase's value.
    ``customer_ids`` (ids, or a select of one customer_id column) keeps only those customers.
    """
    orders = classified_orders(
        tenant_sources(tenant, customer_ids=customer_ids).orders, _as_of(before)
    )
    window: ColumnElement[Any] = orders.c.purchase
    if since is not None:
        window = and_(orders.c.ordered_at >= since, window)
    return (
        select(
            orders.c.customer_id,
            orders.c.ordered_at,
            (orders.c.amount - orders.c.refunded).label("net_amount"),
        )
        .where(window)
        .subquery("purchases")
    )


def _utc_day(moment: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.date(func.timezone("UTC", moment))


def occasions(bought: Subquery) -> Subquery:
    """Purchase occasions of ``bought`` (see `purchases`): one row per customer and UTC day,
    columns customer_id, day (date) and amount (the day's summed net amount)."""
    day = _utc_day(bought.c.ordered_at)
    return (
        select(
            bought.c.customer_id,
            day.label("day"),
            func.sum(bought.c.net_amount).label("amount"),
        )
        .group_by(bought.c.customer_id, day)
        .subquery("occasions")
    )


def summary(tenant: str, as_of: dt.datetime, *, customer_ids: CustomerIds = None) -> Select[Any]:
    """Every customer with a purchase before ``as_of``: columns customer_id (bigint), x
    (bigint, repeat occasions), t_x (integer days), T (bigint days) and m (float8, mean net
    amount of the repeat occasions, currency; null when x = 0). Customers without purchases
    before ``as_of`` have no row.
    """
    days = occasions(purchases(tenant, before=as_of, customer_ids=customer_ids))
    first_day = over(func.min(days.c.day), partition_by=days.c.customer_id)
    marked = select(days, first_day.label("first_day")).subquery("marked")
    first = func.min(marked.c.first_day)
    first_start = func.timezone("UTC", cast(first, DateTime))
    repeat_mean = func.avg(marked.c.amount).filter(marked.c.day > marked.c.first_day)
    return select(
        marked.c.customer_id,
        cast(func.count() - 1, BigInteger).label("x"),
        (func.max(marked.c.day) - first).label("t_x"),
        days_between_sql(first_start, _as_of(as_of)).label("T"),
        cast(repeat_mean, Float).label("m"),
    ).group_by(marked.c.customer_id)


def holdout_occasions(
    tenant: str, start: dt.datetime, end: dt.datetime, customer_ids: Select[Any]
) -> Select[Any]:
    """Purchase occasions in ``start <= time < end`` per customer of ``customer_ids`` that
    has any there: columns customer_id and occasions (bigint)."""
    days = occasions(purchases(tenant, before=end, since=start, customer_ids=customer_ids))
    return select(days.c.customer_id, func.count().label("occasions")).group_by(days.c.customer_id)


def _as_of(moment: dt.datetime) -> ColumnElement[Any]:
    return literal(moment, DateTime(timezone=True))
