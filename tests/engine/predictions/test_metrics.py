"""The predictions as rule metrics: `p_alive`, `expected_orders(N days)`,
`expected_order_value` and `clv(N days)` read the tenant's stored predictions in SQL and give
the same exact decimals in process from the current model's parameters; backtests use the
model fitted as of their time."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl import CustomerFacts, check_text, compute_metric_values, metric_values_select
from dsl.catalog import PREDICTION_HORIZON_DAYS, MetricRef
from dsl.errors import RuleError
from service.db.database import tenant_transaction
from service.db.tables import customers
from service.engine import analytics, evaluation
from service.engine import schemes as published
from service.engine.predictions import tenant as models
from service.engine.sources import tenant_sources
from tests.engine.predictions.test_tenant import order_row
from tests.support import load, load_cdnow

AS_OF = dt.datetime(1997, 10, 1, tzinfo=dt.UTC)
REFS = [
    MetricRef("p_alive"),
    MetricRef("expected_order_value"),
    *(MetricRef("expected_orders", window_days=days) for days in PREDICTION_HORIZON_DAYS),
    *(MetricRef("clv", window_days=days) for days in PREDICTION_HORIZON_DAYS),
]


async def _names(engine: AsyncEngine, tenant: str) -> dict[int, str]:
    async with tenant_transaction(engine, tenant) as connection:
        rows = await connection.execute(select(customers.c.id, customers.c.external_id))
        return {customer_id: name for customer_id, name in rows}


async def test_sql_and_in_process_give_the_same_decimals_for_every_customer(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await load_cdnow(engine, tenant, tmp_path)
    # A customer whose only order comes after the fit has no predictions: null on both sides.
    await load(engine, tenant, [order_row("late", "newcomer", "1997-11-01")])
    async with tenant_transaction(engine, tenant) as connection:
        model, _ = await models.fit_tenant(connection, tenant, AS_OF)
        sql = {
            row[0]: dict(zip(REFS, row[1:], strict=True))
            for row in await connection.execute(
                metric_values_select(REFS, tenant_sources(tenant), AS_OF)
            )
        }
        current = await models.current_model(connection, tenant)
        assert current is not None
        summary = await models.read_summary(connection, tenant, AS_OF)
    facts = models.prediction_facts(current, summary)
    names = await _names(engine, tenant)
    assert len(sql) == 2358
    for customer_id, values in sql.items():
        mine = compute_metric_values(
            REFS, CustomerFacts({}, prediction=facts.get(customer_id)), AS_OF
        )
        assert mine == values, names[customer_id]
    [newcomer] = [i for i, name in names.items() if name == "newcomer"]
    assert set(sql[newcomer].values()) == {None}
    [c4] = [i for i, name in names.items() if name == "00004"]
    # Exact decimals at the documented scales (6 for probabilities and orders, 4 for money).
    assert sql[c4][MetricRef("p_alive")] == Decimal("0.722744")
    assert sql[c4][MetricRef("expected_orders", window_days=365)] == Decimal("1.544733")
    value = sql[c4][MetricRef("clv", window_days=365)]
    assert isinstance(value, Decimal) and value.as_tuple().exponent == -4 and value > 0
    assert model.horizon_days == PREDICTION_HORIZON_DAYS


def test_a_horizon_that_is_not_predicted_is_an_error_naming_those_that_are() -> None:
    with pytest.raises(RuleError) as caught:
        check_text("scheme s {\n  tier A when clv(60 days) > 1\n}")
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.code == "invalid-window"
    assert "30, 90, 180, 365, 730 days only, not for 60 days" in diagnostic.message
    with pytest.raises(RuleError) as caught:
        check_text("scheme s {\n  tier A when expected_orders > 1\n}")
    assert "needs a horizon, like 365 days" in caught.value.diagnostics[0].message


RULES = """
scheme value {
  tier top when percentile(clv(365 days)) > 90
  tier lapsing when p_alive < 0.5
  tier rest otherwise
}
"""


async def test_runs_backtests_and_segments_use_the_predictions(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await load_cdnow(engine, tenant, tmp_path)
    async with tenant_transaction(engine, tenant) as connection:
        await published.publish(connection, tenant, RULES)
    later = dt.datetime(1998, 1, 1, tzinfo=dt.UTC)
    # No model yet: every prediction is null, everyone is in `rest`.
    before = await evaluation.evaluate(engine, tenant, "value", as_of=later)
    assert before is not None and {t.tier: t.customers for t in before.tiers}.get("rest") == 2357
    async with tenant_transaction(engine, tenant) as connection:
        await models.fit_tenant(connection, tenant, AS_OF)
    run = await evaluation.evaluate(engine, tenant, "value")
    assert run is not None
    counts = {t.tier: t.customers for t in run.tiers}
    assert 200 < counts["top"] < 260 and counts["lapsing"] > 0
    # A backtest before the fit's time has no model fitted as of then: the metrics are null.
    early = await evaluation.evaluate(engine, tenant, "value", as_of=AS_OF - dt.timedelta(days=1))
    assert early is not None and {t.tier: t.customers for t in early.tiers}.get("rest") == 2357
    # One at a later time uses the model fitted as of 1997-10-01, at that time: p_alive falls
    # as months pass without a purchase, so more customers are lapsing than in the run.
    late = await evaluation.evaluate(engine, tenant, "value", as_of=later)
    assert late is not None
    assert {t.tier: t.customers for t in late.tiers}["lapsing"] > counts["lapsing"]
    async with tenant_transaction(engine, tenant) as connection:
        rows = await analytics.segment_report(connection, tenant, "value", ["clv(365 days)"])
    clv = {row.tier: dict(row.metrics)["clv(365 days)"] for row in rows}
    assert set(clv) == {"top", "lapsing", "rest"}
    assert clv["top"] is not None and clv["rest"] is not None and clv["top"] > clv["rest"]
