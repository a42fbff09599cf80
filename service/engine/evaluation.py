"""Evaluation: a scheme's compiled statement run over the tenant's customers, its result
compared with the current memberships, and the differences applied as transitions.

A full run is one transaction of set-based statements (never a loop over customers), so
readers see the previous memberships until it commits and a run killed halfway changes
nothing. An advisory lock per tenant and scheme makes concurrent runs (N replicas, cron,
incremental updates) take turns. Incremental updates apply the same statements to just the
customers an ingest touched, inside the ingest's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    column,
    func,
    literal,
    select,
    table,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl import (
    CATALOG,
    CheckedScheme,
    Explanation,
    MetricRef,
    Sources,
    compile_scheme,
    evaluation_order,
    metric_values_select,
)
from dsl.catalog import Source
from dsl.compiler import time_parameters, window_days
from dsl.evaluator import is_population
from dsl.explain import explain
from service.db import locks
from service.db.database import (
    ANALYZE_AFTER_ROWS,
    APP_ROLE,
    analyze_stale,
    execute_batch,
    is_citus,
    tenant_transaction,
)
from service.db.tables import evaluation_runs, prediction_models
from service.engine import schemes as published
from service.engine import webhooks
from service.engine.schemes import PublishedScheme
from service.engine.sources import (
    AFFECTED,
    CREATE_PREDICTIONS_THEN,
    CREATE_TIERS_THEN,
    TIERS_THEN,
    kept_members,
    tenant_sources,
)
from service.errors import UserError

_NEW_TIERS = table(
    "new_tiers", column("customer_id"), column("tier"), column("held"), column("revenue")
)

REVENUE = MetricRef("monetary")
"""A customer's revenue in a run's figures: the catalog's `monetary` as of the run's time (so
orders dated after it do not count), computed by the run's own statement with the tiers."""


@dataclass(frozen=True)
class TierCount:
    tier: str
    customers: int
    revenue: Decimal


@dataclass(frozen=True)
class RunResult:
    tenant: str
    run_id: int
    scheme: str
    version: int
    as_of: dt.datetime
    applied: bool
    customers: int
    """Customers in some tier of the scheme."""
    changed: int
    """Transitions the run recorded (0 for a backtest, which changes nothing)."""
    tiers: tuple[TierCount, ...]
    duration_ms: int


# The tables a compiled scheme reads (`service.engine.sources`) but does not write: a run
# brings the statistics of memberships up to date after it has written them.
_SOURCE_TABLES = ("customers", "orders", "events", "customer_predictions")


async def _lock(connection: AsyncConnection, tenant: str, scheme: str, *, wait: bool) -> bool:
    """Take the scheme's run lock for this transaction; without ``wait``, only if it is free."""
    if wait:
        await locks.acquire(connection, locks.Purpose.run, tenant, scheme)
        return True
    return await locks.try_acquire(connection, locks.Purpose.run, tenant, scheme)


def _staging(statement: Select[Any]) -> Insert:
    """Insert the statement's tiers into ``new_tiers``, with each customer's revenue when it
    has it (compiled with ``figures=(REVENUE,)``: its first figure, `f0`)."""
    result = statement.subquery("result")
    if "f0" not in result.c:
        return _NEW_TIERS.insert().from_select(
            ["customer_id", "tier", "held"],
            select(result.c.customer_id, result.c.tier, result.c.held),
        )
    return _NEW_TIERS.insert().from_select(
        ["customer_id", "tier", "held", "revenue"],
        select(result.c.customer_id, result.c.tier, result.c.held, result.c.f0),
    )


def _compiled_staging(checked: CheckedScheme, sources: Sources, at: dt.datetime) -> Insert:
    return _staging(compile_scheme(checked, sources, at, figures=(REVENUE,)))


def _compiled_counts(checked: CheckedScheme, sources: Sources, at: dt.datetime) -> Select[Any]:
    """Customers and revenue per tier straight from the compiled statement: a backtest keeps
    no tiers, so writing each customer's into ``new_tiers`` (and analyzing it) was work
    nobody read (`_COUNT` over the staged rows, the same figures)."""
    result = compile_scheme(checked, sources, at, figures=(REVENUE,)).subquery("result")
    return (
        select(
            result.c.tier,
            func.count().label("customers"),
            func.coalesce(func.sum(result.c.f0), 0).label("revenue"),
        )
        .where(result.c.tier.is_not(None))
        .group_by(result.c.tier)
    )


async def _stage(
    connection: AsyncConnection, staging: Insert, parameters: Mapping[str, Any] | None = None
) -> None:
    """The new tier of every customer the statement covers, into ``new_tiers`` (with their
    revenue for a full run or a preview, NULL for incremental updates), analyzed when they
    are many, so the statements after it are planned on real counts."""
    await connection.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS new_tiers"
            " (customer_id bigint, tier text, held boolean, revenue numeric) ON COMMIT DROP"
        )
    )
    await connection.execute(text("TRUNCATE new_tiers"))
    staged = await connection.execute(staging, parameters)
    if staged.rowcount >= ANALYZE_AFTER_ROWS:
        await connection.execute(text("ANALYZE new_tiers"))


# Transition numbers count per tenant and scheme (`transition_counters`); the caller holds the
# scheme's run lock, so no other transaction numbers this scheme's transitions meanwhile.
_APPLY = """
WITH current_tiers AS (
    SELECT customer_id, tier, qualified_at FROM memberships
    WHERE tenant_id = :t AND scheme_key = :k {only}
),
diff AS MATERIALIZED (
    SELECT coalesce(n.customer_id, c.customer_id) AS customer_id,
           c.tier AS from_tier, n.tier AS to_tier
    FROM new_tiers n FULL JOIN current_tiers c ON c.customer_id = n.customer_id
    WHERE n.tier IS DISTINCT FROM c.tier
),
counted AS (SELECT count(*) AS n FROM diff),
numbered AS (
    INSERT INTO transition_counters AS c (tenant_id, scheme_key, last_number)
    SELECT :t, :k, n FROM counted WHERE n > 0
    ON CONFLICT (tenant_id, scheme_key)
    DO UPDATE SET last_number = c.last_number + EXCLUDED.last_number
    RETURNING c.last_number - (SELECT n FROM counted) AS before
),
moved AS (
    INSERT INTO transitions (tenant_id, scheme_key, number, customer_id, from_tier, to_tier,
                             at, version, run_id, trigger)
    SELECT :t, :k, (SELECT before FROM numbered) + row_number() OVER (ORDER BY customer_id),
           customer_id, from_tier, to_tier, :now, :version, :run, :trigger
    FROM diff ORDER BY customer_id
    RETURNING id
),
left_scheme AS (
    DELETE FROM memberships m USING diff d
    WHERE m.tenant_id = :t AND m.scheme_key = :k AND m.customer_id = d.customer_id
      AND d.to_tier IS NULL
),
entered AS (
    INSERT INTO memberships (tenant_id, scheme_key, customer_id, tier, since, version,
                             qualified_at)
    SELECT :t, :k, customer_id, to_tier, :now, :version, :now FROM diff
    WHERE to_tier IS NOT NULL
    ON CONFLICT (tenant_id, scheme_key, customer_id) DO UPDATE
    SET tier = EXCLUDED.tier, since = EXCLUDED.since, version = EXCLUDED.version,
        qualified_at = EXCLUDED.qualified_at
){keep}
{result}
"""

# The count and ids of the transitions; whether listeners were told (`_NOTIFY`) and whether a
# webhook may want them, for the outbox statement.
_RESULT = """SELECT n, first_id, last_id, {notify} AS notified, n > 0 AND EXISTS (
    SELECT FROM webhooks w WHERE w.tenant_id = :t AND w.active
      AND (w.scheme_key IS NULL OR w.scheme_key = :k)
) AS hooked
FROM (SELECT count(*) AS n, min(id) AS first_id, max(id) AS last_id FROM moved) done"""

# On Citus the webhooks lookup made the coordinator plan the statement's tail recursively, and
# that plan failed ("a column definition list is required for functions returning record"):
# there the outbox statement runs whenever something changed (it finds the webhooks itself).
_RESULT_CITUS = "SELECT count(*), min(id), max(id), false, count(*) > 0 FROM moved"

# Listeners hear of the transitions from the statement that records them (one round trip
# less), on one Postgres; on Citus, which runs that statement on the tenant's worker while
# listeners listen on the coordinator, from a statement of its own (`_apply`).
_NOTIFY = """(
    SELECT pg_notify(:channel, json_build_object(
        'tenant', CAST(:t AS text), 'scheme', CAST(:k AS text), 'last_id', last_id)::text)
    WHERE n > 0
) IS NULL"""

# For a scheme with `keep` tiers: members of them who qualify are stamped (`qualified_at`),
# one row per first evaluation that keeps a member without their qualifying starts a hold in
# `tier_holds`, and holds end when their member qualifies again or leaves the tier. (The
# members entering a tier are stamped by `entered`; these rows are others.)
_KEEP = """,
requalified AS (
    UPDATE memberships m SET qualified_at = :now FROM new_tiers n
    WHERE m.tenant_id = :t AND m.scheme_key = :k AND m.customer_id = n.customer_id
      AND m.tier = n.tier AND NOT n.held AND m.tier = ANY(CAST(:keeps AS text[])) {only_m}
),
holding AS (
    INSERT INTO tier_holds (tenant_id, scheme_key, customer_id, tier, qualified_at, held_from)
    SELECT :t, :k, n.customer_id, n.tier, c.qualified_at, :now
    FROM new_tiers n JOIN current_tiers c ON c.customer_id = n.customer_id
    WHERE n.held AND NOT EXISTS (
        SELECT 1 FROM tier_holds h
        WHERE h.tenant_id = :t AND h.scheme_key = :k AND h.customer_id = n.customer_id
          AND h.ended_at IS NULL
    )
),
released AS (
    UPDATE tier_holds h SET ended_at = :now
    WHERE h.tenant_id = :t AND h.scheme_key = :k AND h.ended_at IS NULL {only_h}
      AND NOT EXISTS (SELECT 1 FROM new_tiers n WHERE n.customer_id = h.customer_id AND n.held)
)"""

# Listeners (the API's tierChanged subscriptions, on any replica) hear of new transitions
# when the transaction that recorded them commits, and read them by id from the table.
TRANSITIONS_CHANNEL = "tierwise_transitions"


async def _apply(
    connection: AsyncConnection,
    tenant: str,
    scheme: PublishedScheme,
    *,
    now: dt.datetime,
    run_id: int | None,
    trigger: str,
    only_affected: bool,
) -> int:
    """Make ``new_tiers`` current for the scheme, recording each change; returns the count."""
    affected = "customer_id IN (SELECT customer_id FROM affected_customers)"
    only = f"AND {affected}" if only_affected else ""
    keeps = [tier.name for tier in scheme.checked.tiers if tier.keep_days is not None]
    keep = ""
    if keeps:
        keep = _KEEP.format(
            only_m=f"AND m.{affected}" if only_affected else "",
            only_h=f"AND h.{affected}" if only_affected else "",
        )
    parameters: dict[str, Any] = {
        "t": tenant,
        "k": scheme.key,
        "now": now,
        "version": scheme.version,
        "run": run_id,
        "trigger": trigger,
    }
    if keeps:
        parameters["keeps"] = keeps
    # The statement also says whether a webhook may want the transitions.
    citus = await is_citus(connection)
    if not citus:
        parameters["channel"] = TRANSITIONS_CHANNEL
    result = _RESULT_CITUS if citus else _RESULT.format(notify=_NOTIFY)
    statement = _APPLY.format(only=only, keep=keep, result=result)
    changed, first_id, last_id, _, hooked = (
        await connection.execute(text(statement), parameters)
    ).one()
    if hooked:
        # The webhooks' outbox rows, committed (or not) with the transitions.
        await webhooks.enqueue(connection, tenant, scheme.key, first_id, last_id)
    if changed and citus:
        payload = json.dumps({"tenant": tenant, "scheme": scheme.key, "last_id": last_id})
        await connection.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": TRANSITIONS_CHANNEL, "payload": payload},
        )
    return int(changed)


# Revenue comes with the tiers, from the run's statement (`REVENUE`): no second scan of the
# orders. It is the revenue as of the run's time, for a run of now as for a backtest.
_COUNT = """
SELECT tier, count(*) AS customers, coalesce(sum(revenue), 0) AS revenue
FROM new_tiers WHERE tier IS NOT NULL GROUP BY tier
"""


async def _count(
    connection: AsyncConnection, scheme: PublishedScheme, counts: Select[Any] | None = None
) -> tuple[TierCount, ...]:
    """Customers and revenue per tier of ``new_tiers`` (or of ``counts``, a statement giving
    tier, customers and revenue), in the scheme's tier order."""
    rows = await connection.execute(text(_COUNT) if counts is None else counts)
    found = {row.tier: TierCount(row.tier, int(row.customers), row.revenue) for row in rows}
    return tuple(found.get(tier, TierCount(tier, 0, Decimal(0))) for tier in scheme.tiers)


async def _start_run(
    engine: AsyncEngine,
    tenant: str,
    scheme: PublishedScheme,
    *,
    as_of: dt.datetime,
    applied: bool,
    trigger: str,
) -> int:
    """Record the run as running, committed at once so that it is visible while it works;
    runs of this scheme still marked running were killed (the caller holds the lock)."""
    async with tenant_transaction(engine, tenant, batch=True) as connection:
        await connection.execute(
            update(evaluation_runs)
            .where(
                evaluation_runs.c.tenant_id == tenant,
                evaluation_runs.c.scheme_key == scheme.key,
                evaluation_runs.c.status == "running",
            )
            .values(status="abandoned", error="the process running it stopped before it finished")
        )
        run_id = await connection.scalar(
            evaluation_runs.insert()
            .values(
                tenant_id=tenant,
                scheme_key=scheme.key,
                version=scheme.version,
                as_of=as_of,
                applied=applied,
                trigger=trigger,
                status="running",
            )
            .returning(evaluation_runs.c.id)
        )
    assert run_id is not None
    return int(run_id)


async def _fail_run(engine: AsyncEngine, tenant: str, run_id: int, error: BaseException) -> None:
    async with tenant_transaction(engine, tenant, batch=True) as connection:
        await connection.execute(
            update(evaluation_runs)
            .where(evaluation_runs.c.tenant_id == tenant, evaluation_runs.c.id == run_id)
            .values(status="failed", finished_at=dt.datetime.now(dt.UTC), error=str(error))
        )


def check_past(as_of: dt.datetime, now: dt.datetime) -> None:
    """Refuse an as-of time after ``now`` (UserError): a backtest, like any as-of, looks at
    the data before a past time; the CLI's ``--as-of`` checks it for every command."""
    if as_of > now:
        raise UserError(
            f"as of {as_of:%Y-%m-%d %H:%M} UTC is in the future: an as-of time looks at the data "
            "before a past time (leave it out to use now)"
        )


def _reached(order: Sequence[CheckedScheme], keys: Collection[str]) -> set[str]:
    """``keys`` and every scheme whose tiers they read, directly or through others (``order``
    has dependencies first)."""
    reached = set(keys)
    for scheme in reversed(order):
        if scheme.key in reached:
            reached |= scheme.depends_on
    return reached


async def _keep_then(connection: AsyncConnection, key: str, statement: Select[Any]) -> None:
    """A scheme's tiers from its compiled ``statement`` into `TIERS_THEN`, for the `in tier`
    of the schemes evaluated after it in this transaction."""
    result = statement.subquery("result")
    await connection.execute(
        TIERS_THEN.insert().from_select(
            ["scheme_key", "customer_id", "tier"],
            select(literal(key), result.c.customer_id, result.c.tier).where(
                result.c.tier.is_not(None)
            ),
        )
    )


def _uses_predictions(refs: Sequence[MetricRef]) -> bool:
    """Whether any of ``refs`` (or the metric one of them ranks) is a prediction metric."""
    return any(
        CATALOG[r.name].source is Source.PREDICTIONS
        for ref in refs
        for r in (ref, ref.of)
        if r is not None
    )


async def _predictions_then(
    connection: AsyncConnection, tenant: str, as_of: dt.datetime, refs: Sequence[MetricRef]
) -> None:
    """`PREDICTIONS_THEN` for a backtest at ``as_of``: empty, and filled when ``refs`` use a
    prediction metric. The prediction models (numpy, scipy: a third of the `evaluate`
    command's start-up) are imported only then."""
    await connection.execute(text(CREATE_PREDICTIONS_THEN))
    await connection.execute(text("TRUNCATE predictions_then"))
    if _uses_predictions(refs):
        from service.engine.predictions.tenant import stage_predictions_then

        await stage_predictions_then(connection, tenant, as_of)


async def _referenced_then(
    connection: AsyncConnection, tenant: str, scheme: CheckedScheme, as_of: dt.datetime
) -> None:
    """The tiers as of ``as_of`` of every published scheme ``scheme`` reads (directly or
    through others), evaluated in dependency order into `TIERS_THEN`: a backtest's `in tier`
    sees the tiers of then, never today's memberships."""
    await connection.execute(text(CREATE_TIERS_THEN))
    order = [found.checked for found in await published.current(connection, tenant)]
    needed = _reached(order, scheme.depends_on)
    sources = tenant_sources(tenant, backtest=as_of)
    refs = [ref for other in order if other.key in needed for ref in other.refs]
    await _predictions_then(connection, tenant, as_of, [*refs, *scheme.refs])
    for other in order:
        if other.key in needed:
            assert other.key is not None
            await _keep_then(connection, other.key, compile_scheme(other, sources, as_of))


async def evaluate(
    engine: AsyncEngine,
    tenant: str,
    key: str,
    *,
    as_of: dt.datetime | None = None,
    trigger: str = "manual",
    wait: bool = True,
    now: dt.datetime | None = None,
) -> RunResult | None:
    """Run scheme ``key`` over every customer of ``tenant``.

    Without ``as_of`` the result becomes current (memberships and transitions); with it, the
    run is a backtest on the data before ``as_of``: of the customers who existed by then,
    with `in tier` read from the referenced schemes evaluated as of then; counted and
    recorded, nothing else changes. Raises UserError for an ``as_of`` in the future. Without
    ``wait``, returns None at once if another run of the scheme holds the lock (the
    scheduler's case: some replica is already doing it). Raises `NotFound` for a scheme the
    tenant has not published. ``now`` is the run's time (default: the clock's), for a past
    run replayed at its time.
    """
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    applied = as_of is None
    at = as_of or now
    check_past(at, now)
    async with tenant_transaction(engine, tenant, batch=True) as connection:
        if not await _lock(connection, tenant, key, wait=wait):
            return None
        scheme = await published.find(connection, tenant, key)
        run_id = await _start_run(
            engine, tenant, scheme, as_of=at, applied=applied, trigger=trigger
        )
        try:
            await connection.execute(text("SET LOCAL work_mem = '256MB'"))
            # Small loads leave statistics alone; their sum may have made them stale since.
            await analyze_stale(connection, _SOURCE_TABLES)
            if applied:
                sources = tenant_sources(tenant)
            else:
                await _referenced_then(connection, tenant, scheme.checked, at)
                sources = tenant_sources(tenant, backtest=at)
            changed = 0
            if applied:
                staging = await published.rule_work(
                    len(scheme.source), _compiled_staging, scheme.checked, sources, at
                )
                await _stage(connection, staging)
                changed = await _apply(
                    connection,
                    tenant,
                    scheme,
                    now=now,
                    run_id=run_id,
                    trigger=trigger,
                    only_affected=False,
                )
                # Statistics now, for the incremental updates that look memberships up next
                # (autovacuum may be off, or late).
                await analyze_stale(connection, ("memberships",), changed=changed)
                tiers = await _count(connection, scheme)
            else:
                counts = await published.rule_work(
                    len(scheme.source), _compiled_counts, scheme.checked, sources, at
                )
                tiers = await _count(connection, scheme, counts)
            duration_ms = round((time.perf_counter() - started) * 1000)
            result = RunResult(
                tenant,
                run_id,
                key,
                scheme.version,
                at,
                applied,
                sum(t.customers for t in tiers),
                changed,
                tiers,
                duration_ms,
            )
            await connection.execute(
                update(evaluation_runs)
                .where(evaluation_runs.c.tenant_id == tenant, evaluation_runs.c.id == run_id)
                .values(
                    status="succeeded",
                    finished_at=dt.datetime.now(dt.UTC),
                    duration_ms=duration_ms,
                    customers=result.customers,
                    changed=changed,
                    tiers=[
                        {"tier": t.tier, "customers": t.customers, "revenue": str(t.revenue)}
                        for t in tiers
                    ],
                )
            )
        except Exception as error:
            await _fail_run(engine, tenant, run_id, error)
            raise
    _observe(result, trigger)
    return result


def _observe(result: RunResult, trigger: str) -> None:
    """Count the run in the Prometheus metrics of a process that serves them: one that imported
    `service.metrics` (the app does at start). A CLI command's process has nobody to report
    them to, and starts without prometheus_client (about 30 ms)."""
    metrics = sys.modules.get("service.metrics")
    if metrics is not None:
        metrics.observe_run(result, trigger)


async def evaluate_all(
    engine: AsyncEngine,
    tenant: str,
    *,
    keys: Sequence[str] | None = None,
    as_of: dt.datetime | None = None,
    trigger: str = "manual",
    wait: bool = True,
) -> list[RunResult]:
    """Run the named schemes (default: all), and those that read their tiers, in dependency
    order; skipped ones (lock held elsewhere, without ``wait``) are left out, and so are keys
    of no published scheme (with ``wait``, an empty result for named keys means that).
    Raises UserError for an ``as_of`` in the future."""
    if as_of is not None:
        check_past(as_of, dt.datetime.now(dt.UTC))
    async with tenant_transaction(engine, tenant) as connection:
        ordered = await published.current(connection, tenant)
    chosen = set(keys) if keys is not None else {s.key for s in ordered}
    results: list[RunResult] = []
    for scheme in ordered:
        if scheme.key in chosen or scheme.checked.depends_on & chosen:
            chosen.add(scheme.key)
            result = await evaluate(
                engine, tenant, scheme.key, as_of=as_of, trigger=trigger, wait=wait
            )
            if result is not None:
                results.append(result)
    return results


_INCREMENTAL_STAGINGS: dict[tuple[str, str, int], tuple[Insert, tuple[int, ...]]] = {}
_INCREMENTAL_STAGINGS_KEPT = 512


async def _incremental_staging(
    tenant: str, scheme: PublishedScheme
) -> tuple[Insert, tuple[int, ...]]:
    """The staging statement of a scheme version for the affected customers, built once and
    run at each update's time through its time parameters (building and compiling it anew
    was most of an incremental update's time); with the lengths of its windows."""
    key = (tenant, scheme.key, scheme.version)
    if key not in _INCREMENTAL_STAGINGS:

        def build() -> tuple[Insert, tuple[int, ...]]:
            statement = compile_scheme(
                scheme.checked,
                tenant_sources(tenant, customer_ids=AFFECTED),
                dt.datetime.now(dt.UTC),
            )
            return _staging(statement), window_days(statement)

        built = await published.rule_work(len(scheme.source), build)
        if len(_INCREMENTAL_STAGINGS) >= _INCREMENTAL_STAGINGS_KEPT:
            _INCREMENTAL_STAGINGS.clear()
        _INCREMENTAL_STAGINGS[key] = built
    return _INCREMENTAL_STAGINGS[key]


def _has_model(tenant: str) -> ColumnElement[bool]:
    """Whether ``tenant`` has fitted a prediction model."""
    return (
        select(prediction_models.c.version).where(prediction_models.c.tenant_id == tenant).exists()
    )


async def refresh_affected(
    connection: AsyncConnection,
    tenant: str,
    *,
    trigger: str = "ingest",
    now: dt.datetime | None = None,
) -> int:
    """Bring the tiers of the customers in ``affected_customers`` up to date, in the caller's
    transaction (ingest's); returns the number of transitions recorded.

    Schemes with population-relative metrics (scores, percentiles) are left to full runs: one
    customer's new order can move every other customer's rank, so no per-customer update can
    be exact for them. The customers' predictions are recomputed first, with the tenant's
    current model (`refresh_predictions`), so the prediction metrics follow their new orders.
    """
    now = now or dt.datetime.now(dt.UTC)
    # The models need numpy and scipy (0.9 s of CPU in a new process: most of what a one-row
    # `tierwise import` spent), and do nothing for a tenant without a fitted model: imported
    # only for a tenant that has one. Whether it has is asked with the schemes.
    current, has_model = await published.current_and(connection, tenant, _has_model(tenant))
    if has_model:
        from service.engine.predictions.tenant import refresh_predictions

        await refresh_predictions(connection, tenant, now)
    schemes = [s for s in current if not s.uses_population]
    if not schemes:
        return 0
    # The schemes' run locks and an empty `new_tiers` in one round trip.
    await execute_batch(
        connection,
        [
            *(
                f"SELECT pg_advisory_xact_lock({locks.key(locks.Purpose.run, tenant, s.key)})"
                for s in schemes
            ),
            *_INCREMENTAL_NEW_TIERS,
        ],
    )
    changed = 0
    for index, scheme in enumerate(schemes):
        staging, window_days = await _incremental_staging(tenant, scheme)
        if index:
            await connection.execute(text("DELETE FROM new_tiers"))
        staged = await connection.execute(staging, time_parameters(window_days, now))
        if staged.rowcount >= ANALYZE_AFTER_ROWS:
            await connection.execute(text("ANALYZE new_tiers"))
        changed += await _apply(
            connection,
            tenant,
            scheme,
            now=now,
            run_id=None,
            trigger=trigger,
            only_affected=True,
        )
    return changed


# `new_tiers` of incremental updates: kept by the connection and emptied at each commit (as
# ingest's tables, service/data/ingest.py), not made and dropped by every update. Made so only
# by the tenants' role, whose transactions are the ones to find it later: a table made by
# another (the login role's maintenance) is dropped at its commit, as a run's is.
_INCREMENTAL_NEW_TIERS = (
    f"""DO $$ BEGIN
    IF to_regclass('pg_temp.new_tiers') IS NULL THEN
        EXECUTE 'CREATE TEMP TABLE new_tiers'
            ' (customer_id bigint, tier text, held boolean, revenue numeric) ON COMMIT '
            || CASE WHEN current_user = '{APP_ROLE}' THEN 'DELETE ROWS' ELSE 'DROP' END;
    END IF;
END $$""",
    "DELETE FROM new_tiers",
)


@dataclass(frozen=True)
class MigrationCell:
    """``customers`` moved (or would move) from ``from_tier`` to ``to_tier``; None is "in no
    tier of the scheme"."""

    from_tier: str | None
    to_tier: str | None
    customers: int


@dataclass(frozen=True)
class MoveSample:
    """A customer who would move from ``from_tier`` to ``to_tier``, and why (the draft's
    rules traced with their values)."""

    from_tier: str | None
    to_tier: str | None
    customer: str  # the customer's own id
    explanation: Explanation


@dataclass(frozen=True)
class Preview:
    scheme: str
    as_of: dt.datetime
    tiers: tuple[TierCount, ...]
    moves: tuple[MigrationCell, ...]
    """Against the current memberships of the scheme's key; empty for a new scheme."""
    samples: tuple[MoveSample, ...] = ()
    """Up to `SAMPLES_PER_MOVE` customers of each move (the first by id), explained."""


SAMPLES_PER_MOVE = 3

_SAMPLES = """
SELECT from_tier, to_tier, customer_id, external_id FROM (
    SELECT m.tier AS from_tier, n.tier AS to_tier, c.id AS customer_id, c.external_id,
           row_number() OVER (PARTITION BY m.tier, n.tier ORDER BY c.external_id) AS number
    FROM new_tiers n
    FULL JOIN (SELECT customer_id, tier FROM memberships
               WHERE tenant_id = :t AND scheme_key = :k) m
      ON m.customer_id = n.customer_id
    JOIN customers c ON c.tenant_id = :t AND c.id = coalesce(n.customer_id, m.customer_id)
    WHERE n.tier IS DISTINCT FROM m.tier
) ranked
WHERE number <= :n
ORDER BY from_tier NULLS LAST, to_tier NULLS LAST, external_id
"""


async def _samples(
    connection: AsyncConnection,
    tenant: str,
    checked: CheckedScheme,
    at: dt.datetime,
    backtest: dt.datetime | None,
    staged: Collection[str],
) -> tuple[MoveSample, ...]:
    """A few customers of each move of the staged draft ``checked``, explained with the
    values the draft's evaluation read (`in tier` of drafts from the staged tiers)."""
    rows = (
        await connection.execute(
            text(_SAMPLES), {"t": tenant, "k": checked.key, "n": SAMPLES_PER_MOVE}
        )
    ).all()
    if not rows:
        return ()
    ids = [row.customer_id for row in rows]
    population = any(is_population(ref) for ref in checked.refs)
    sources = tenant_sources(
        tenant,
        customer_ids=None if population else ids,
        backtest=backtest,
        staged=() if backtest is not None else staged,
    )
    statement = metric_values_select(checked.refs, sources, at)
    statement = statement.where(statement.selected_columns.customer_id.in_(ids))
    values = {
        row[0]: dict(zip(checked.refs, row[1:], strict=True))
        for row in await connection.execute(statement)
    }
    # Who a `keep` tier keeps: the current members (a backtest's are explained without).
    kept = await kept_members(connection, tenant, checked, ids) if backtest is None else {}
    return tuple(
        MoveSample(
            row.from_tier,
            row.to_tier,
            row.external_id,
            explain(
                checked,
                values.get(row.customer_id, dict.fromkeys(checked.refs)),
                kept.get(row.customer_id),
                at,
            ),
        )
        for row in rows
    )


_MOVES = """
SELECT m.tier AS from_tier, n.tier AS to_tier, count(*) AS customers
FROM new_tiers n
FULL JOIN (SELECT customer_id, tier FROM memberships WHERE tenant_id = :t AND scheme_key = :k) m
  ON m.customer_id = n.customer_id
WHERE n.tier IS DISTINCT FROM m.tier
GROUP BY m.tier, n.tier
ORDER BY count(*) DESC, m.tier, n.tier
"""


async def preview(
    engine: AsyncEngine,
    tenant: str,
    source: str,
    *,
    file: str = "<rules>",
    scheme_key: str | None = None,
    as_of: dt.datetime | None = None,
) -> list[Preview]:
    """What publishing ``source`` would do: customers and revenue per tier and who would move
    where, computed in a transaction that is rolled back. Raises RuleError on bad rules,
    UserError for an ``as_of`` in the future.

    A draft's `in tier` reads the drafts of ``source`` it references (publishing makes them
    current) and, for other schemes, the current memberships; with ``as_of`` (a backtest),
    every scheme it reads is evaluated as of then, and only customers who existed by then
    count."""
    now = dt.datetime.now(dt.UTC)
    at = as_of or now
    check_past(at, now)
    previews: dict[str, Preview] = {}
    async with tenant_transaction(engine, tenant, batch=True) as connection:
        rules = await published.rule_work(
            len(source), published.parse_for_publishing, source, file, scheme_key
        )
        result = await published.check_against_published(
            connection, tenant, rules, chars=len(source)
        )
        await connection.execute(text("SET LOCAL work_mem = '256MB'"))
        await connection.execute(text(CREATE_TIERS_THEN))
        drafts = {checked.key: checked for checked in result.schemes}
        if as_of is None:
            order = evaluation_order(list(result.schemes))
            sources = tenant_sources(tenant, staged=[key for key in drafts if key is not None])
        else:
            others = [
                found.checked
                for found in await published.current(connection, tenant)
                if found.key not in drafts
            ]
            order = evaluation_order([*others, *drafts.values()])
            sources = tenant_sources(tenant, backtest=as_of)
        needed = _reached(order, [key for key in drafts if key is not None])
        if as_of is not None:
            refs = [ref for checked in order if checked.key in needed for ref in checked.refs]
            await _predictions_then(connection, tenant, at, refs)
        for checked in order:
            if checked.key not in needed:
                continue
            assert checked.key is not None
            if checked.key not in drafts:
                statement = await published.rule_work(
                    len(source), compile_scheme, checked, sources, at
                )
                await _keep_then(connection, checked.key, statement)
                continue
            statement = await published.rule_work(
                len(source), compile_scheme, checked, sources, at, (REVENUE,)
            )
            draft = PublishedScheme(checked.key, checked.title, 0, "", checked)
            await _stage(connection, _staging(statement))
            await connection.execute(
                text(
                    "INSERT INTO tiers_then SELECT :k, customer_id, tier FROM new_tiers"
                    " WHERE tier IS NOT NULL"
                ),
                {"k": checked.key},
            )
            tiers = await _count(connection, draft)
            moves = await connection.execute(text(_MOVES), {"t": tenant, "k": checked.key})
            cells = tuple(MigrationCell(m.from_tier, m.to_tier, int(m.customers)) for m in moves)
            samples = await _samples(
                connection, tenant, checked, at, as_of, [key for key in drafts if key is not None]
            )
            previews[checked.key] = Preview(checked.key, at, tiers, cells, samples)
        await connection.rollback()
    return [previews[key] for key in drafts if key is not None]
