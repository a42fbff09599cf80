"""Scheduled evaluations: time moves tiers too (recency grows every day with no new data).
Tenants with a prediction model are refitted on the same interval first (`refit_due`), so the
evaluations read fresh predictions.

Every replica runs this loop; Postgres coordinates them. A scheme is due when its last
successful run of now is older than the interval, and a run takes the scheme's advisory lock
without waiting, so N replicas evaluate each due scheme once between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.db import locks
from service.db.database import tenant_transaction
from service.engine import evaluation
from service.engine.predictions import tenant as models
from service.errors import UserError

log = logging.getLogger(__name__)

SCHEDULER = audit.Actor("scheduler", "admin", "service")
"""Who the audit log says refitted a model on schedule."""

_DUE = """
SELECT s.tenant_id, s.key
FROM schemes s
WHERE s.current_version IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM evaluation_runs r
      WHERE r.tenant_id = s.tenant_id AND r.scheme_key = s.key AND r.applied
        AND r.version = s.current_version
        AND r.status IN ('succeeded', 'running') AND r.started_at > :since
  )
ORDER BY s.tenant_id, s.key
"""


_MODELS_DUE = """
SELECT tenant_id FROM (
    SELECT DISTINCT ON (tenant_id) tenant_id, fitted_at
    FROM prediction_models ORDER BY tenant_id, version DESC
) newest
WHERE fitted_at <= :since
ORDER BY tenant_id
"""


async def refit_due(
    engine: AsyncEngine, interval: dt.timedelta, stopping: asyncio.Event | None = None
) -> list[tuple[str, models.Model]]:
    """Refit the models of every tenant whose current model was fitted ``interval`` ago or
    earlier, on its purchases until now, with the same horizons and discount rate; returns the
    tenants refitted and their new models. A tenant whose fit another replica holds is left to
    it; one that no longer has enough repeat buyers keeps its model (logged)."""
    since = dt.datetime.now(dt.UTC) - interval
    async with engine.connect() as connection:
        due = (await connection.scalars(text(_MODELS_DUE), {"since": since})).all()
    refitted: list[tuple[str, models.Model]] = []
    for tenant in due:
        if stopping is not None and stopping.is_set():
            break
        try:
            model = await _refit(engine, tenant, since)
        except UserError as error:
            log.warning("scheduled refit of tenant %s skipped: %s", tenant, error)
            continue
        except Exception:  # one tenant's failure must not starve the tenants after it
            log.exception("scheduled refit of tenant %s failed", tenant)
            continue
        if model is not None:
            refitted.append((tenant, model))
    return refitted


async def _refit(engine: AsyncEngine, tenant: str, since: dt.datetime) -> models.Model | None:
    """Refit ``tenant``'s models unless another replica holds its fit or did it since."""
    async with tenant_transaction(engine, tenant, batch=True) as connection:
        if not await locks.try_acquire(connection, locks.Purpose.predict, tenant):
            return None
        current = await models.current_model(connection, tenant)
        if current is None or current.fitted_at > since:
            return None  # refitted meanwhile
        model, _ = await models.fit_tenant(
            connection,
            tenant,
            dt.datetime.now(dt.UTC),
            actor=SCHEDULER,
            horizon_days=current.horizon_days,
            yearly_discount_rate=current.yearly_discount_rate,
        )
        return model


async def run_due(
    engine: AsyncEngine, interval: dt.timedelta, stopping: asyncio.Event | None = None
) -> list[evaluation.RunResult]:
    """Refit the models due (`refit_due`), then evaluate every scheme (of every tenant) not
    evaluated within ``interval``; once ``stopping`` is set, no further tenant is started. A
    tenant whose refit or evaluation fails is logged and left for the next round; the other
    tenants' still run."""
    for tenant, model in await refit_due(engine, interval, stopping):
        log.info("scheduled refit of tenant %s: model version %d", tenant, model.version)
    since = dt.datetime.now(dt.UTC) - interval
    async with engine.connect() as connection:
        due = (await connection.execute(text(_DUE), {"since": since})).all()
    by_tenant: dict[str, list[str]] = {}
    for tenant, key in due:
        by_tenant.setdefault(tenant, []).append(key)
    results: list[evaluation.RunResult] = []
    for tenant, keys in by_tenant.items():
        if stopping is not None and stopping.is_set():
            break
        try:
            results += await evaluation.evaluate_all(
                engine, tenant, keys=keys, trigger="schedule", wait=False
            )
        except Exception:  # one tenant's failure must not starve the tenants after it
            log.exception("scheduled evaluation of tenant %s failed", tenant)
    return results


async def run_forever(
    engine: AsyncEngine, interval: dt.timedelta, stopping: asyncio.Event | None = None
) -> None:
    """Check for due schemes every tenth of the interval (at most hourly), until cancelled or
    ``stopping`` is set (a round in progress finishes its current tenant first)."""
    stopping = stopping or asyncio.Event()
    pause = min(interval.total_seconds() / 10, 3600.0)
    while not stopping.is_set():
        try:
            for result in await run_due(engine, interval, stopping):
                log.info(
                    "scheduled evaluation of %s: %d customers, %d changed, %d ms",
                    result.scheme,
                    result.customers,
                    result.changed,
                    result.duration_ms,
                )
        except Exception:  # a failed round is logged and retried next round, never fatal
            log.exception("scheduled evaluation failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)
