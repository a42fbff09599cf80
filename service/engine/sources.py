"""What a compiled scheme reads from: the tenant's customers, orders, events and current
memberships as the compiler's `dsl.Sources`, built in one place for every caller (full runs,
incremental updates, backtests, previews, analytics, the API's loaders and `where` filters)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Double,
    FromClause,
    Integer,
    Select,
    Table,
    and_,
    column,
    func,
    literal,
    or_,
    select,
    table,
)
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl import CheckedScheme, Sources
from dsl.evaluator import Kept
from service.db.tables import (
    customer_predictions,
    customers,
    events,
    memberships,
    orders,
    prediction_models,
    tier_holds,
    transitions,
)

AFFECTED: Select[Any] = select(column("customer_id")).select_from(table("affected_customers"))
"""The customers of the ``affected_customers`` temporary table that ingest fills."""

TIERS_THEN = table("tiers_then", column("scheme_key"), column("customer_id"), column("tier"))
"""Tiers computed in this transaction (a backtest's referenced schemes as of its time, a
preview's drafts), where the `in tier` of the schemes evaluated after them read them."""

CREATE_TIERS_THEN = (
    "CREATE TEMP TABLE IF NOT EXISTS tiers_then"
    " (scheme_key text, customer_id bigint, tier text) ON COMMIT DROP"
)


PREDICTIONS_THEN = table(
    "predictions_then",
    column("customer_id", BigInteger),
    column("p_alive", Double),
    column("expected_order_value", Double),
    column("expected_orders", ARRAY(Double)),
    column("clv", ARRAY(Double)),
    column("horizon_days", ARRAY(Integer)),
)
"""A backtest's predictions: the model fitted as of its time, for the customers as they were
then (`service.engine.predictions.tenant.stage_predictions_then` fills it)."""

CREATE_PREDICTIONS_THEN = (
    "CREATE TEMP TABLE IF NOT EXISTS predictions_then (customer_id bigint,"
    " p_alive float8, expected_order_value float8, expected_orders float8[],"
    " clv float8[], horizon_days int[]) ON COMMIT DROP"
)


def predictions(tenant: str) -> Select[Any]:
    """The tenant's stored predictions with their model's horizons: the columns the catalog's
    prediction metrics read (`dsl.catalog.SqlContext.prediction`)."""
    cp, pm = customer_predictions, prediction_models
    return (
        select(
            cp.c.customer_id,
            cp.c.p_alive,
            cp.c.expected_order_value,
            cp.c.expected_orders,
            cp.c.clv,
            pm.c.horizon_days,
        )
        .select_from(
            cp.join(pm, and_(pm.c.tenant_id == cp.c.tenant_id, pm.c.version == cp.c.model_version))
        )
        .where(cp.c.tenant_id == tenant)
    )


def existed_by(tenant: str, as_of: dt.datetime) -> ColumnElement[bool]:
    """Customers Tierwise knows existed before ``as_of``: registered, recorded, or with an
    order or event before it (a backtest counts no one who came later)."""

    def any_before(facts: Table, at: Column[Any]) -> ColumnElement[bool]:
        # OFFSET 0 keeps Postgres from turning the EXISTS into a hashed subplan, which reads
        # every order (or event) of the tenant up front, a second pass over them besides the
        # run's own; as it is, it probes the index for the customers the other terms leave.
        return (
            select(literal(1))
            .where(facts.c.tenant_id == tenant, facts.c.customer_id == customers.c.id, at < as_of)
            .offset(0)
            .correlate(customers)
            .exists()
        )

    return or_(
        customers.c.registered_at < as_of,
        customers.c.created_at < as_of,
        any_before(orders, orders.c.ordered_at),
        any_before(events, events.c.occurred_at),
    )


def kept_now(tenant: str, scheme: str) -> Select[Any]:
    """The scheme's members for its `keep` tiers: their tier and when they last qualified."""
    m = memberships
    return select(m.c.customer_id, m.c.tier, m.c.qualified_at).where(
        m.c.tenant_id == tenant, m.c.scheme_key == scheme
    )


async def kept_members(
    connection: AsyncConnection, tenant: str, scheme: CheckedScheme, ids: Sequence[int]
) -> dict[int, Kept]:
    """The current tier and last qualification of each of ``ids`` in ``scheme``, when it has
    `keep` tiers (explain says whether one keeps them); empty otherwise."""
    if scheme.key is None or all(tier.keep_days is None for tier in scheme.tiers):
        return {}
    found = kept_now(tenant, scheme.key).where(memberships.c.customer_id.in_(ids))
    return {
        row.customer_id: Kept(row.tier, row.qualified_at) for row in await connection.execute(found)
    }


def kept_then(tenant: str, scheme: str, as_of: dt.datetime) -> Select[Any]:
    """The scheme's members as of ``as_of``, from the membership history: each customer's tier
    after their last transition before then, and when they last qualified for it: the one of
    the hold they were in then (`tier_holds`), else ``as_of`` itself (they were qualifying at
    the evaluations before then; the scheduler runs far more often than a keep is long)."""
    t, h = transitions, tier_holds
    last = (
        select(t.c.customer_id, t.c.to_tier.label("tier"))
        .where(t.c.tenant_id == tenant, t.c.scheme_key == scheme, t.c.at < as_of)
        .ext(distinct_on(t.c.customer_id))
        .order_by(t.c.customer_id, t.c.at.desc(), t.c.number.desc())
        .subquery("last_moves")
    )
    hold = (
        select(h.c.qualified_at)
        .where(
            h.c.tenant_id == tenant,
            h.c.scheme_key == scheme,
            h.c.customer_id == last.c.customer_id,
            h.c.tier == last.c.tier,
            h.c.held_from < as_of,
            or_(h.c.ended_at.is_(None), h.c.ended_at >= as_of),
        )
        .order_by(h.c.held_from.desc())
        .limit(1)
        .correlate(last)
        .scalar_subquery()
    )
    return select(
        last.c.customer_id,
        last.c.tier,
        func.coalesce(hold, literal(as_of, DateTime(timezone=True))).label("qualified_at"),
    ).where(last.c.tier.is_not(None))


def kept_as_of(sources: Sources, tenant: str, as_of: dt.datetime) -> Sources:
    """``sources`` with the members `keep` tiers see taken from the membership history as of
    ``as_of`` (`kept_then`), for evaluating a scheme at a past time on today's sources."""
    return replace(sources, kept=lambda scheme: kept_then(tenant, scheme, as_of).subquery("kept"))


def tenant_sources(
    tenant: str,
    *,
    customer_ids: Sequence[int] | Select[Any] | None = None,
    backtest: dt.datetime | None = None,
    staged: Collection[str] = (),
) -> Sources:
    """The tenant's rows as the compiler's sources.

    ``customer_ids`` (a list of ids, or a select of one ``customer_id`` column such as
    `AFFECTED`) keeps only those customers, filtered in every source so that Postgres reads
    just their rows: right for every metric but the population ones (ranks, percentiles),
    which compare a customer with the whole tenant. ``backtest`` (a past time) keeps only the
    customers who existed by then (`existed_by`) and reads `in tier` from `TIERS_THEN` alone,
    never from today's memberships: the caller fills it with the referenced schemes as of that
    time, and reads the prediction metrics from `PREDICTIONS_THEN` (which the caller fills
    with the predictions of the model fitted as of that time).
    ``staged`` names schemes whose tiers `in tier` reads from `TIERS_THEN` instead of the
    current memberships (a preview's drafts).
    """
    customer_rows = select(customers).where(customers.c.tenant_id == tenant)
    order_rows = select(orders).where(orders.c.tenant_id == tenant)
    event_rows = select(events).where(events.c.tenant_id == tenant)
    member_rows: Select[Any] = select(
        memberships.c.customer_id, memberships.c.scheme_key.label("scheme"), memberships.c.tier
    ).where(memberships.c.tenant_id == tenant)
    then_rows: Select[Any] = select(
        TIERS_THEN.c.customer_id, TIERS_THEN.c.scheme_key.label("scheme"), TIERS_THEN.c.tier
    )
    predicted: Select[Any] = predictions(tenant)
    if backtest is not None:
        customer_rows = customer_rows.where(existed_by(tenant, backtest))
        member_rows = then_rows
        predicted = select(PREDICTIONS_THEN)
    elif staged:
        member_rows = member_rows.where(memberships.c.scheme_key.not_in(list(staged)))
        member_rows = select(member_rows.union_all(then_rows).subquery("tiers_now"))
    if customer_ids is not None:
        customer_rows = customer_rows.where(customers.c.id.in_(customer_ids))
        order_rows = order_rows.where(orders.c.customer_id.in_(customer_ids))
        event_rows = event_rows.where(events.c.customer_id.in_(customer_ids))
        member_rows = member_rows.where(member_rows.selected_columns.customer_id.in_(customer_ids))
        predicted = predicted.where(predicted.selected_columns.customer_id.in_(customer_ids))
    predicted_rows: FromClause = predicted.subquery("predictions")

    def kept(scheme: str) -> FromClause:
        rows = (
            kept_then(tenant, scheme, backtest)
            if backtest is not None
            else kept_now(tenant, scheme)
        )
        if customer_ids is not None:
            rows = rows.where(rows.selected_columns.customer_id.in_(customer_ids))
        return rows.subquery("kept")

    return Sources(
        customer_rows.subquery("customers"),
        order_rows.subquery("orders"),
        event_rows.subquery("events"),
        member_rows.subquery("memberships"),
        predicted_rows,
        kept,
    )
