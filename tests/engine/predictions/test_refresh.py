"""Predictions stay current: a customer's are recomputed with the current model when their
orders arrive, and the scheduler refits each tenant's model on its interval."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.db.database import tenant_transaction
from service.db.tables import customer_predictions, customers
from service.engine import evaluation, scheduler
from service.engine.predictions import tenant as models
from tests.engine.predictions.test_tenant import order_row
from tests.support import load, load_cdnow

AS_OF = dt.datetime(1997, 10, 1, tzinfo=dt.UTC)


async def _predictions(engine: AsyncEngine, tenant: str) -> dict[str, tuple[object, ...]]:
    async with tenant_transaction(engine, tenant) as connection:
        rows = await connection.execute(
            select(
                customers.c.external_id,
                customer_predictions.c.model_version,
                customer_predictions.c.repeat_purchases,
                customer_predictions.c.p_alive,
            ).join(customers, customers.c.id == customer_predictions.c.customer_id)
        )
        return {name: tuple(rest) for name, *rest in rows}


async def test_an_order_recomputes_that_customers_predictions_with_the_current_model(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await load_cdnow(engine, tenant, tmp_path)
    async with tenant_transaction(engine, tenant) as connection:
        model, _ = await models.fit_tenant(connection, tenant, AS_OF)
    before = await _predictions(engine, tenant)
    rows = [order_row("late", "00050", "1997-11-01", "30"), order_row("new", "fresh", "1997-11-02")]
    await load(engine, tenant, rows, after_load=evaluation.refresh_affected)
    after = await _predictions(engine, tenant)
    assert before["00050"][:2] == (model.version, 0)
    assert after["00050"][:2] == (model.version, 1)  # one repeat occasion now
    assert after["00050"][2] != before["00050"][2]
    assert after["fresh"][:2] == (model.version, 0)  # a new customer gets predictions too
    assert {k: v for k, v in after.items() if k not in ("00050", "fresh")} == {
        k: v for k, v in before.items() if k != "00050"
    }


async def test_without_a_model_an_order_writes_no_predictions(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(
        engine, tenant, [order_row("a", "x", "2026-01-01")], after_load=evaluation.refresh_affected
    )
    assert await _predictions(engine, tenant) == {}


async def test_the_scheduler_refits_a_model_older_than_its_interval(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await load_cdnow(engine, tenant, tmp_path)
    async with tenant_transaction(engine, tenant) as connection:
        first, _ = await models.fit_tenant(connection, tenant, AS_OF, horizon_days=[7])
    # Fitted just now: not due on a day's interval.
    assert [t for t, _ in await scheduler.refit_due(engine, dt.timedelta(days=1))] == []
    refitted = dict(await scheduler.refit_due(engine, dt.timedelta(0)))
    model = refitted[tenant]
    assert model.version == first.version + 1 and model.as_of > AS_OF
    assert model.horizon_days == first.horizon_days == (7, 30, 90, 180, 365, 730)
    assert {v[0] for v in (await _predictions(engine, tenant)).values()} == {model.version}
    async with tenant_transaction(engine, tenant) as connection:
        entries = await audit.entries(connection, tenant)
    assert any(e.action == "model.fit" and e.actor == "scheduler" for e in entries)
