from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import locks
from service.db.tables import tenants
from service.engine import evaluation, scheduler
from tests.support import VALUE, load, order, publish

DAY = dt.timedelta(days=1)


async def test_due_schemes_run_once_then_not_until_the_interval_passes(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(engine, tenant, [order("o1", "c", 5, "10")])
    await publish(engine, tenant, VALUE)
    first = await scheduler.run_due(engine, DAY)
    assert [(r.scheme, r.customers) for r in first if r.tenant == tenant] == [("value", 1)]
    again = await scheduler.run_due(engine, DAY)
    assert [r for r in again if r.tenant == tenant] == []
    # A day later the scheme is due again (recency has grown by one day).
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE evaluation_runs SET started_at = started_at - interval '25 hours'"
                " WHERE tenant_id = :t"
            ),
            {"t": tenant},
        )
    later = await scheduler.run_due(engine, DAY)
    assert [r.scheme for r in later if r.tenant == tenant] == ["value"]


async def test_a_scheme_being_evaluated_elsewhere_is_skipped(
    engine: AsyncEngine, tenant: str
) -> None:
    await load(engine, tenant, [order("o1", "c", 5, "10")])
    await publish(engine, tenant, VALUE)
    async with engine.begin() as holder:  # another replica's run holds the lock
        await holder.execute(
            text("SELECT pg_advisory_xact_lock(:k)"),
            {"k": locks.key(locks.Purpose.run, tenant, "value")},
        )
        skipped = await evaluation.evaluate(engine, tenant, "value", wait=False)
    assert skipped is None
    ran = await evaluation.evaluate(engine, tenant, "value", wait=False)
    assert ran is not None and ran.customers == 1


async def test_one_tenants_failing_evaluation_does_not_keep_the_others_from_running(
    engine: AsyncEngine, tenant: str
) -> None:
    # A tenant whose runs fail in Postgres, sorted before the other (tenants run in id order).
    failing = f"a_{tenant}"
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=failing, name=failing))
    for each in (failing, tenant):
        await load(engine, each, [order("o1", "c", 5, "10")])
        await publish(engine, each, VALUE)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                f"CREATE FUNCTION fail_{tenant}() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'this tenant''s runs fail'; END $$"
            )
        )
        await connection.execute(
            text(
                f"CREATE TRIGGER fail_{tenant} BEFORE INSERT ON evaluation_runs FOR EACH ROW"
                f" WHEN (NEW.tenant_id = '{failing}') EXECUTE FUNCTION fail_{tenant}()"
            )
        )
    try:
        results = await scheduler.run_due(engine, DAY)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TRIGGER fail_{tenant} ON evaluation_runs"))
            await connection.execute(text(f"DROP FUNCTION fail_{tenant}()"))
    assert [(r.tenant, r.scheme) for r in results if r.tenant in (failing, tenant)] == [
        (tenant, "value")
    ]
