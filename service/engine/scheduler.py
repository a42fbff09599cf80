"""Scheduled evaluations: time moves tiers too (recency grows every day with no new data).

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

from service.engine import evaluation

log = logging.getLogger(__name__)

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


async def run_due(
    engine: AsyncEngine, interval: dt.timedelta, stopping: asyncio.Event | None = None
) -> list[evaluation.RunResult]:
    """Evaluate every scheme (of every tenant) not evaluated within ``interval``; once
    ``stopping`` is set, no further tenant is started. A tenant whose evaluation fails is
    logged and left for the next round; the other tenants' schemes still run."""
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
