"""Property: for any order history, the prediction metrics read in SQL (the predictions the
refresh after an order stored) equal those the in-process evaluator computes from the tenant's
current parameters and the customer's orders, summarised in Python here."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl import CustomerFacts, compute_metric_values, metric_values_select
from dsl.catalog import PREDICTION_HORIZON_DAYS, MetricRef
from service.db.database import tenant_transaction
from service.db.tables import customers, prediction_models
from service.engine import evaluation
from service.engine.predictions import tenant as models
from service.engine.sources import tenant_sources
from tests.support import load

AS_OF = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
REFS = [
    MetricRef("p_alive"),
    MetricRef("expected_order_value"),
    *(MetricRef("expected_orders", window_days=days) for days in PREDICTION_HORIZON_DAYS),
    *(MetricRef("clv", window_days=days) for days in PREDICTION_HORIZON_DAYS),
]
_NAMES = itertools.count()

# One order: minutes before AS_OF (up to ~3 years) and an amount (zero and refunds included).
orders = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=3 * 365 * 24 * 60),
        st.decimals(min_value=-50, max_value=500, places=2, allow_nan=False),
    ),
    min_size=1,
    max_size=8,
)


def _summary(history: list[tuple[dt.datetime, Decimal]]) -> models.Summary:
    """x, t_x, T and m of one customer's purchases, by the lifetimes convention
    (purchases.py): a negative amount is a refund (docs/rules.md), not a purchase, and these
    refunds name no order, so they lower no purchase's value."""
    days: dict[dt.date, Decimal] = {}
    for moment, amount in history:
        day = moment.astimezone(dt.UTC).date()
        days[day] = days.get(day, Decimal(0)) + amount
    ordered = sorted(days)
    first = ordered[0]
    start = dt.datetime(first.year, first.month, first.day, tzinfo=dt.UTC)
    repeat = [days[d] for d in ordered[1:]]
    mean = float(sum(repeat, Decimal(0)) / len(repeat)) if repeat else float("nan")
    return models.Summary(
        np.array([0], dtype=np.int64),
        np.array([len(ordered) - 1], dtype=np.float64),
        np.array([(ordered[-1] - first).days], dtype=np.float64),
        np.array([(AS_OF - start) // dt.timedelta(days=1)], dtype=np.float64),
        np.array([mean], dtype=np.float64),
    )


async def _model(engine: AsyncEngine, tenant: str) -> models.Model:
    async with tenant_transaction(engine, tenant) as connection:
        current = await models.current_model(connection, tenant)
        if current is None:
            # The CDNOW fit in days, as a tenant's current model, with discounting.
            await connection.execute(
                insert(prediction_models).values(
                    tenant_id=tenant,
                    version=1,
                    as_of=AS_OF,
                    r=0.2417,
                    alpha=30.757,
                    a=0.8145,
                    b=2.4772,
                    p=6.2496,
                    q=3.7442,
                    v=15.4435,
                    customers=2357,
                    repeat_customers=946,
                    log_likelihood=-9582.4,
                    gamma_gamma_customers=946,
                    gamma_gamma_log_likelihood=-4000.0,
                    horizon_days=list(PREDICTION_HORIZON_DAYS),
                    yearly_discount_rate=Decimal("0.1"),
                )
            )
            current = await models.current_model(connection, tenant)
        assert current is not None
        return current


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=orders)
async def test_sql_and_in_process_predictions_agree(
    engine: AsyncEngine, tenant: str, history: list[tuple[int, Decimal]]
) -> None:
    model = await _model(engine, tenant)
    name = f"c{next(_NAMES)}"
    moments = [(AS_OF - dt.timedelta(minutes=m), amount) for m, amount in history]
    rows = [
        {
            "order_id": f"{name}-{i}",
            "customer_id": name,
            "ordered_at": t.isoformat(),
            "amount": str(a),
        }
        for i, (t, a) in enumerate(moments)
    ]

    async def refresh(connection: AsyncConnection, tenant_id: str) -> int:
        return await evaluation.refresh_affected(connection, tenant_id, now=AS_OF)

    await load(engine, tenant, rows, after_load=refresh)
    async with tenant_transaction(engine, tenant) as connection:
        customer_id = await connection.scalar(
            select(customers.c.id).where(customers.c.external_id == name)
        )
        [row] = (
            await connection.execute(
                metric_values_select(
                    REFS, tenant_sources(tenant, customer_ids=[customer_id]), AS_OF
                )
            )
        ).all()
    sql = dict(zip(REFS, row[1:], strict=True))
    purchases = [(moment, amount) for moment, amount in moments if amount >= 0]
    if not purchases:  # only refunds: no purchase, no prediction
        assert set(sql.values()) == {None}, (history, sql)
        return
    prediction = models.prediction_facts(model, _summary(purchases))[0]
    mine = compute_metric_values(REFS, CustomerFacts({}, prediction=prediction), AS_OF)
    assert mine == sql, (history, sql)
    assert sql[MetricRef("p_alive")] is not None
