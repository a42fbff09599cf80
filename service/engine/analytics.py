"""Segment analytics: customers and revenue per tier, migration between runs or dates, churn.

Every query is set-based and filtered by tenant. Definitions users rely on:

- Shares are of the whole tenant: `customer_share` = the tier's customers / all the tenant's
  customers; `revenue_share` = the tier's revenue / all the tenant's revenue. So the shares of
  a scheme with `otherwise` sum to 1, and those of a scheme without it to what it covers.
- Revenue is the catalog's `monetary` as of the report's time (default: now), as a run
  counts it: orders dated after that time do not count. The `customer_metrics` rollup holds
  it for every customer whose last order is before that time; the few with orders dated at
  or after it have theirs computed from their orders.
- Tiers come in the order of the scheme's current version, tiers without customers included
  (and after them, tiers a newer version dropped that still have customers).
- The state of a scheme after a run is rebuilt from `transitions`: each customer's latest
  transition with an id up to the run's last one. Incremental updates (no run) count by id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import DateTime, Select, Subquery, func, literal, select, text, union_all
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl import CATALOG, CheckedScheme, MetricRef, Type, compile_scheme, metric_values_select
from dsl.catalog import AVERAGE_SCALE, classified_orders
from dsl.checked import IsNull, Ref
from dsl.checker import check_condition
from dsl.compiler import with_own_time
from dsl.parser import parse_condition
from service.db.tables import customer_metrics, customers, memberships, transitions
from service.engine import schemes
from service.engine.evaluation import REVENUE, MigrationCell
from service.engine.members import metric_column
from service.engine.sources import kept_as_of, tenant_sources
from service.errors import NotFound, UserError

__all__ = [
    "ChurnRow",
    "MigrationCell",
    "RunRow",
    "SegmentRow",
    "TierSize",
    "backtest_migration_matrix",
    "churn_rate",
    "evaluation_runs",
    "migration_matrix",
    "migration_matrix_between_dates",
    "segment_dicts",
    "segment_report",
    "segment_table",
    "share",
    "text_values",
    "tier_sizes",
]

# Average revenue to the 4 decimals of order amounts, as the catalog's averages.
_AVERAGE_STEP = Decimal(1).scaleb(-AVERAGE_SCALE)


@dataclass(frozen=True)
class SegmentRow:
    scheme: str
    tier: str
    customers: int
    customer_share: Decimal  # of all the tenant's customers
    revenue: Decimal
    average_revenue: Decimal | None  # None for a tier without customers
    revenue_share: Decimal  # of all the tenant's revenue
    metrics: tuple[tuple[str, Decimal | None], ...] = ()  # (metric text, average) as asked


@dataclass(frozen=True)
class ChurnRow:
    scheme: str
    tier: str
    customers: int  # in the tier at the start of the period
    churned: int  # of those, customers with no purchase in the period
    rate: Decimal | None  # churned / customers; None for a tier that was empty


def share(part: int | Decimal, whole: int | Decimal) -> Decimal:
    """``part / whole`` as a decimal (28 significant digits), 0 when ``whole`` is."""
    return Decimal(part) / Decimal(whole) if whole else Decimal(0)


# Shares as reports print them: 4 decimals, half to even.
SHARE_STEP = Decimal("0.0001")


# --- Segment report -----------------------------------------------------------------------

# Tiers of each scheme's current version, in order: the report's rows.
_TIERS = """
SELECT s.key AS scheme, t.tier, t.position
FROM schemes s
JOIN scheme_versions v
  ON v.tenant_id = s.tenant_id AND v.scheme_key = s.key AND v.version = s.current_version
CROSS JOIN LATERAL unnest(v.tiers) WITH ORDINALITY AS t(tier, position)
WHERE s.tenant_id = :t AND (CAST(:k AS text) IS NULL OR s.key = :k)
ORDER BY s.key, t.position
"""


def revenue_as_of(tenant: str, at: dt.datetime) -> Subquery:
    """``customer_id``, ``revenue``: each customer's revenue as of ``at``, the catalog's
    `monetary` then (`evaluation.REVENUE`, as runs count it). The rollup's total is that for
    a customer whose last order is before ``at``; for those with orders dated at or after it
    (orders dated in the future), it is computed from their orders, so they do not count."""
    rollup = customer_metrics
    later = select(rollup.c.customer_id).where(
        rollup.c.tenant_id == tenant, rollup.c.last_order_at >= at
    )
    computed = metric_values_select(
        [REVENUE], tenant_sources(tenant, customer_ids=later), at
    ).subquery("computed")
    return union_all(
        select(rollup.c.customer_id, rollup.c.order_total.label("revenue")).where(
            rollup.c.tenant_id == tenant, rollup.c.last_order_at < at
        ),
        select(computed.c.customer_id, computed.c.m0),
    ).subquery("revenue")


def _counts(tenant: str, scheme_key: str | None, revenue: Subquery) -> Select[Any]:
    m = memberships
    statement = (
        select(
            m.c.scheme_key.label("scheme"),
            m.c.tier,
            func.count().label("customers"),
            func.coalesce(func.sum(revenue.c.revenue), 0).label("revenue"),
        )
        .select_from(m.outerjoin(revenue, revenue.c.customer_id == m.c.customer_id))
        .where(m.c.tenant_id == tenant)
        .group_by(m.c.scheme_key, m.c.tier)
    )
    return statement if scheme_key is None else statement.where(m.c.scheme_key == scheme_key)


def _totals(tenant: str, revenue: Subquery) -> Select[Any]:
    return select(
        select(func.count())
        .select_from(customers)
        .where(customers.c.tenant_id == tenant)
        .scalar_subquery()
        .label("customers"),
        select(func.coalesce(func.sum(revenue.c.revenue), 0)).scalar_subquery().label("revenue"),
    )


def _metric_refs(texts: Sequence[str]) -> list[MetricRef]:
    """Catalog metrics written as in rules (`recency`, `monetary(90 days)`); numeric only."""
    refs = []
    for metric in texts:
        checked = check_condition(parse_condition(f"{metric} is null"), file="<metric>")
        if (
            not isinstance(checked, IsNull)
            or not isinstance(checked.operand, Ref)
            or checked.operand.type not in (Type.NUMBER, Type.DAYS)
        ):
            raise UserError(f"`{metric}` is not a numeric metric, so it has no average")
        refs.append(checked.operand.ref)
    return refs


async def _metric_averages(
    connection: AsyncConnection,
    tenant: str,
    scheme_key: str | None,
    refs: Sequence[MetricRef],
    as_of: dt.datetime,
) -> dict[tuple[str, str], tuple[Decimal | None, ...]]:
    values = metric_values_select(refs, tenant_sources(tenant), as_of).subquery("metric_values")
    averages = [func.round(func.avg(values.c[f"m{i}"]), AVERAGE_SCALE) for i in range(len(refs))]
    statement: Select[Any] = (
        select(memberships.c.scheme_key, memberships.c.tier, *averages)
        .join(values, values.c.customer_id == memberships.c.customer_id)
        .where(memberships.c.tenant_id == tenant)
        .group_by(memberships.c.scheme_key, memberships.c.tier)
    )
    if scheme_key is not None:
        statement = statement.where(memberships.c.scheme_key == scheme_key)
    return {(row[0], row[1]): tuple(row[2:]) for row in await connection.execute(statement)}


async def segment_report(
    connection: AsyncConnection,
    tenant: str,
    scheme_key: str | None,
    metrics: Sequence[str] = (),
    *,
    as_of: dt.datetime | None = None,
) -> list[SegmentRow]:
    """Per scheme (all, or `scheme_key`) and tier, over current memberships.

    `metrics` are averaged per tier and revenue is counted (`revenue_as_of`) at `as_of`
    (default: now); a customer for whom a metric is null (recency without orders) does not
    count towards its average. Raises
    `NotFound` for a `scheme_key` the tenant has not published, `UserError` for a metric
    that has no average.
    """
    refs = _metric_refs(metrics)
    params = {"t": tenant, "k": scheme_key}
    tiers = (await connection.execute(text(_TIERS), params)).all()
    # No tiers: an unknown scheme, or (rarely) a published one without tiers.
    if (
        scheme_key is not None
        and not tiers
        and not await schemes.published_keys(connection, tenant, [scheme_key])
    ):
        raise schemes.unpublished(scheme_key, tenant)
    at = as_of or dt.datetime.now(dt.UTC)
    revenues = revenue_as_of(tenant, at)
    counts = {
        (row.scheme, row.tier): (int(row.customers), Decimal(row.revenue))
        for row in await connection.execute(_counts(tenant, scheme_key, revenues))
    }
    totals = (await connection.execute(_totals(tenant, revenues))).one()
    averages = await _metric_averages(connection, tenant, scheme_key, refs, at) if refs else {}
    order: dict[str, list[str]] = {}
    for row in tiers:
        order.setdefault(row.scheme, []).append(row.tier)
    for scheme, names in order.items():
        # Tiers a newer version dropped keep their customers until the next run: shown last.
        names += sorted(tier for s, tier in counts if s == scheme and tier not in names)
    report = []
    for scheme, tier in ((s, tier) for s, names in order.items() for tier in names):
        count, revenue = counts.get((scheme, tier), (0, Decimal(0)))
        means = averages.get((scheme, tier), (None,) * len(refs))
        report.append(
            SegmentRow(
                scheme=scheme,
                tier=tier,
                customers=count,
                customer_share=share(count, int(totals.customers)),
                revenue=revenue,
                average_revenue=(revenue / count).quantize(_AVERAGE_STEP, ROUND_HALF_UP)
                if count
                else None,
                revenue_share=share(revenue, Decimal(totals.revenue)),
                metrics=tuple(zip(metrics, means, strict=True)),
            )
        )
    return report


def segment_dicts(rows: Sequence[SegmentRow]) -> list[dict[str, str | int | Decimal]]:
    """The JSON form `tierwise segments --format json` prints (with service.db.exact, so
    revenue is exact; shares to 4 decimals)."""
    return [
        {
            "scheme": row.scheme,
            "tier": row.tier,
            "customers": row.customers,
            "customer_share": row.customer_share.quantize(SHARE_STEP),
            "revenue": row.revenue,
            "revenue_share": row.revenue_share.quantize(SHARE_STEP),
        }
        for row in rows
    ]


def segment_table(rows: Sequence[SegmentRow]) -> str:
    """The report as an aligned text table: one line per tier, metric averages at the end."""
    metric_names = [name for name, _ in rows[0].metrics] if rows else []
    header = ["scheme", "tier", "customers", "share", "revenue", "revenue share", "avg revenue"]
    lines = [header + [f"avg {name}" for name in metric_names]]
    for row in rows:
        lines.append(
            [
                row.scheme,
                row.tier,
                f"{row.customers:,}",
                f"{row.customer_share:.1%}",
                f"{row.revenue:,.2f}",
                f"{row.revenue_share:.1%}",
                "-" if row.average_revenue is None else f"{row.average_revenue:,.2f}",
            ]
            + ["-" if value is None else f"{value:,.2f}" for _, value in row.metrics]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) + len(metric_names))]
    # Names left-aligned, numbers right-aligned, as a reader scans them.
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


# --- Migration ----------------------------------------------------------------------------

# The last transition that belongs to a run's state: the run's own last one, or for a run that
# changed nothing, the last one recorded by the time it finished.
_BOUNDARY = """
SELECT r.applied, r.status, coalesce(
    (SELECT max(id) FROM transitions
     WHERE tenant_id = :t AND scheme_key = :k AND run_id = r.id),
    (SELECT max(id) FROM transitions
     WHERE tenant_id = :t AND scheme_key = :k AND at <= r.finished_at),
    0) AS boundary
FROM evaluation_runs r
WHERE r.tenant_id = :t AND r.id = :run AND r.scheme_key = :k
"""

_STATE = """
SELECT DISTINCT ON (customer_id) customer_id, to_tier AS tier
FROM transitions
WHERE tenant_id = :t AND scheme_key = :k AND id <= :{bound}
ORDER BY customer_id, id DESC
"""

_MIGRATION = f"""
WITH before AS ({_STATE.format(bound="before")}), after AS ({_STATE.format(bound="after")})
SELECT b.tier AS from_tier, a.tier AS to_tier, count(*) AS customers
FROM before b FULL JOIN after a ON a.customer_id = b.customer_id
WHERE b.tier IS NOT NULL OR a.tier IS NOT NULL
GROUP BY b.tier, a.tier
"""


async def _current_tiers(connection: AsyncConnection, tenant: str, scheme_key: str) -> list[str]:
    tiers = await connection.scalar(
        text(
            "SELECT v.tiers FROM schemes s JOIN scheme_versions v ON v.tenant_id = s.tenant_id"
            " AND v.scheme_key = s.key AND v.version = s.current_version"
            " WHERE s.tenant_id = :t AND s.key = :k"
        ),
        {"t": tenant, "k": scheme_key},
    )
    return list(tiers or [])


def _ordered(cells: Sequence[MigrationCell], tiers: Sequence[str]) -> list[MigrationCell]:
    """Cells in the scheme's tier order (unknown tiers after, by name; no tier last)."""

    def rank(tier: str | None) -> tuple[int, int, str]:
        if tier is None:
            return (2, 0, "")
        return (0, tiers.index(tier), "") if tier in tiers else (1, 0, tier)

    return sorted(cells, key=lambda c: (rank(c.from_tier), rank(c.to_tier)))


async def _boundary(
    connection: AsyncConnection, tenant: str, scheme_key: str, run_id: int, run: str
) -> int:
    row = (
        await connection.execute(text(_BOUNDARY), {"t": tenant, "k": scheme_key, "run": run_id})
    ).one_or_none()
    if row is None:
        raise NotFound(f"no evaluation run {run!r} of scheme `{scheme_key}`")
    if not row.applied or row.status != "succeeded":
        raise UserError(
            f"run {run!r} of `{scheme_key}` did not change the tiers (a backtest or a failed run);"
            " compare dates with migration_matrix_between_dates instead"
        )
    return int(row.boundary)


async def migration_matrix(
    connection: AsyncConnection,
    tenant: str,
    scheme_key: str,
    from_run_id: int,
    to_run_id: int,
    *,
    names: tuple[str, str] | None = None,
) -> list[MigrationCell]:
    """How many customers went from each tier after `from_run_id` to each tier after
    `to_run_id` (staying put included); only non-empty cells. Errors name the runs by
    ``names``, the ids the caller knows them by (the API's are opaque: the internal ones are
    not to be shown), else by their internal ids."""
    shown = names or (str(from_run_id), str(to_run_id))
    params = {
        "t": tenant,
        "k": scheme_key,
        "before": await _boundary(connection, tenant, scheme_key, from_run_id, shown[0]),
        "after": await _boundary(connection, tenant, scheme_key, to_run_id, shown[1]),
    }
    cells = [
        MigrationCell(row.from_tier, row.to_tier, int(row.customers))
        for row in await connection.execute(text(_MIGRATION), params)
    ]
    return _ordered(cells, await _current_tiers(connection, tenant, scheme_key))


_STATE_AT = """
SELECT DISTINCT ON (customer_id) customer_id, to_tier AS tier
FROM transitions
WHERE tenant_id = :t AND scheme_key = :k AND at <= :{at}
ORDER BY customer_id, id DESC
"""

_MIGRATION_AT = f"""
WITH before AS ({_STATE_AT.format(at="before")}), after AS ({_STATE_AT.format(at="after")})
SELECT b.tier AS from_tier, a.tier AS to_tier, count(*) AS customers
FROM before b FULL JOIN after a ON a.customer_id = b.customer_id
WHERE b.tier IS NOT NULL OR a.tier IS NOT NULL
GROUP BY b.tier, a.tier
"""


async def migration_matrix_between_dates(
    connection: AsyncConnection,
    tenant: str,
    scheme_key: str,
    from_at: dt.datetime,
    to_at: dt.datetime,
) -> list[MigrationCell]:
    """How many customers went from the tier they were in at `from_at` to the tier they were in
    at `to_at` (staying put included), as recorded: the tiers are rebuilt from the scheme's
    transitions, whatever version of the rules placed them. Only non-empty cells. Raises
    `NotFound` for a scheme never published, `UserError` when `to_at` is before `from_at`."""
    if to_at < from_at:
        raise UserError("the migration's second date must not be before its first")
    await _published(connection, tenant, scheme_key)
    params = {"t": tenant, "k": scheme_key, "before": from_at, "after": to_at}
    cells = [
        MigrationCell(row.from_tier, row.to_tier, int(row.customers))
        for row in await connection.execute(text(_MIGRATION_AT), params)
    ]
    return _ordered(cells, await _current_tiers(connection, tenant, scheme_key))


async def _published(connection: AsyncConnection, tenant: str, scheme_key: str) -> None:
    if not await schemes.published_keys(connection, tenant, [scheme_key]):
        raise schemes.unpublished(scheme_key, tenant)


async def backtest_migration_matrix(
    connection: AsyncConnection,
    tenant: str,
    scheme: CheckedScheme,
    from_as_of: dt.datetime,
    to_as_of: dt.datetime,
) -> list[MigrationCell]:
    """The backtesting view: evaluate `scheme` (today's rules, or any) as of both dates on the
    data of then (nothing is written) and count customers from each tier at `from_as_of` to
    each tier at `to_as_of`. What the tiers really were is `migration_matrix_between_dates`."""
    sources = tenant_sources(tenant)
    # A `keep` tier keeps whom the membership history says it kept then.
    before = with_own_time(
        compile_scheme(scheme, kept_as_of(sources, tenant, from_as_of), from_as_of), "from"
    ).subquery("before")
    after = with_own_time(
        compile_scheme(scheme, kept_as_of(sources, tenant, to_as_of), to_as_of), "to"
    ).subquery("after")
    # Both select every customer of the tenant, so an inner join loses no one.
    statement = (
        select(before.c.tier.label("from_tier"), after.c.tier.label("to_tier"), func.count())
        .select_from(before.join(after, after.c.customer_id == before.c.customer_id))
        .where(before.c.tier.is_not(None) | after.c.tier.is_not(None))
        .group_by(before.c.tier, after.c.tier)
    )
    cells = [
        MigrationCell(row[0], row[1], int(row[2])) for row in await connection.execute(statement)
    ]
    return _ordered(cells, scheme.tier_names)


# --- Churn --------------------------------------------------------------------------------


def _churn(tenant: str, scheme_key: str, since: dt.datetime, until: dt.datetime) -> Select[Any]:
    """Per tier at ``since`` (each customer's latest transition by then): its customers and
    those of them with no purchase in [since, until). A purchase as `frequency` counts it
    (`classified_orders`, refunds dated before ``until``): a cancelled order, a refund or an
    order refunded in full is none, so its customer has churned."""
    t = transitions
    state = (
        select(t.c.customer_id, t.c.to_tier.label("tier"))
        .ext(distinct_on(t.c.customer_id))
        .where(t.c.tenant_id == tenant, t.c.scheme_key == scheme_key, t.c.at <= since)
        .order_by(t.c.customer_id, t.c.id.desc())
        .subquery("state")
    )
    classified = classified_orders(
        tenant_sources(tenant).orders, literal(until, DateTime(timezone=True))
    )
    buyers = (
        select(classified.c.customer_id)
        .where(classified.c.purchase, classified.c.ordered_at >= since)
        .distinct()
        .subquery("buyers")
    )
    return (
        select(
            state.c.tier,
            func.count().label("customers"),
            func.count().filter(buyers.c.customer_id.is_(None)).label("churned"),
        )
        .select_from(state.outerjoin(buyers, buyers.c.customer_id == state.c.customer_id))
        .where(state.c.tier.is_not(None))
        .group_by(state.c.tier)
    )


async def churn_rate(
    connection: AsyncConnection,
    tenant: str,
    scheme_key: str,
    since: dt.datetime,
    until: dt.datetime,
) -> list[ChurnRow]:
    """Per tier of the scheme at `since` (rebuilt from transitions): the share of its customers
    who made no purchase in [since, until). Tiers in the current version's order. `NotFound`
    for a scheme never published."""
    if until <= since:
        raise UserError("the churn period must end after it starts")
    await _published(connection, tenant, scheme_key)
    counts = {
        row.tier: (int(row.customers), int(row.churned))
        for row in await connection.execute(_churn(tenant, scheme_key, since, until))
    }
    tiers = await _current_tiers(connection, tenant, scheme_key)
    # Tiers the scheme had at `since` but its current version dropped still get a row.
    names = tiers + sorted(set(counts) - set(tiers))
    rows = []
    for tier in names:
        members, churned = counts.get(tier, (0, 0))
        rate = share(churned, members) if members else None
        rows.append(ChurnRow(scheme_key, tier, members, churned, rate))
    return rows


# --- Runs and tier sizes over time ----------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    id: int
    scheme: str
    version: int
    trigger: str
    status: str  # running, succeeded, failed
    as_of: dt.datetime
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: int | None
    customers: int | None
    changed: int | None


_RUNS = """
SELECT id, scheme_key, version, trigger, status, as_of, started_at, finished_at, duration_ms,
       customers, changed
FROM evaluation_runs
WHERE tenant_id = :t AND scheme_key = :k AND applied
ORDER BY started_at DESC, id DESC
LIMIT :n
"""


async def evaluation_runs(
    connection: AsyncConnection, tenant: str, scheme_key: str, last: int
) -> list[RunRow]:
    """The scheme's `last` runs that made (or were to make) their result current, newest
    first: backtests are left out. `NotFound` for a scheme never published."""
    await _published(connection, tenant, scheme_key)
    rows = await connection.execute(text(_RUNS), {"t": tenant, "k": scheme_key, "n": last})
    return [
        RunRow(
            id=row.id,
            scheme=row.scheme_key,
            version=row.version,
            trigger=row.trigger,
            status=row.status,
            as_of=row.as_of,
            started_at=row.started_at,
            finished_at=row.finished_at,
            duration_ms=row.duration_ms,
            customers=row.customers,
            changed=row.changed,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class TierSize:
    day: dt.date
    tier: str
    customers: int


# Every transition adds one customer to its new tier and takes one from its old: the sum of
# those up to the end of a day is the tier's size that day (days are UTC).
_SIZES = """
WITH moves AS (
    SELECT (at AT TIME ZONE 'UTC')::date AS day, to_tier AS tier, 1 AS delta
    FROM transitions
    WHERE tenant_id = :t AND scheme_key = :k AND to_tier IS NOT NULL AND at < :until
    UNION ALL
    SELECT (at AT TIME ZONE 'UTC')::date, from_tier, -1
    FROM transitions
    WHERE tenant_id = :t AND scheme_key = :k AND from_tier IS NOT NULL AND at < :until
), daily AS (
    SELECT day, tier, sum(delta) AS delta FROM moves GROUP BY day, tier
), tiers AS (
    SELECT DISTINCT tier FROM daily
)
SELECT d.day::date AS day, tiers.tier,
       coalesce((SELECT sum(delta) FROM daily
                 WHERE daily.tier = tiers.tier AND daily.day <= d.day), 0) AS customers
FROM generate_series(CAST(:first AS date), CAST(:last AS date), interval '1 day') AS d(day)
CROSS JOIN tiers
ORDER BY day, tier
"""

MAX_SIZE_DAYS = 731


async def tier_sizes(
    connection: AsyncConnection, tenant: str, scheme_key: str, first: dt.date, last: dt.date
) -> list[TierSize]:
    """Each tier's customers at the end of every day from `first` to `last` (UTC), rebuilt
    from the scheme's transitions; tiers in the current version's order, then others (tiers
    of older versions) by name. `NotFound` for a scheme never published, `UserError` for a
    period backwards or longer than `MAX_SIZE_DAYS`."""
    if last < first:
        raise UserError("the period of tier sizes ends before it starts")
    if (last - first).days + 1 > MAX_SIZE_DAYS:
        raise UserError(f"tier sizes cover at most {MAX_SIZE_DAYS} days at a time")
    await _published(connection, tenant, scheme_key)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    params = {"t": tenant, "k": scheme_key, "first": first, "last": last, "until": until}
    rows = [
        TierSize(row.day, row.tier, int(row.customers))
        for row in await connection.execute(text(_SIZES), params)
    ]
    tiers = await _current_tiers(connection, tenant, scheme_key)

    def rank(tier: str) -> tuple[int, int, str]:
        return (0, tiers.index(tier), "") if tier in tiers else (1, 0, tier)

    return sorted(rows, key=lambda r: (r.day, rank(r.tier)))


# --- Values of text fields ------------------------------------------------------------------


async def text_values(
    connection: AsyncConnection, tenant: str, metric: str, first: int
) -> list[tuple[str, int]]:
    """The `first` most common values of a text metric (`region`, `gender`, ...) among the
    tenant's customers, with how many customers have each, most common first (then by
    value). What a rule compares such a field with must be one of these to match anyone.
    Raises `RuleError` for an unknown metric, `UserError` for one that is not text."""
    ref = metric_column(metric)
    if CATALOG[ref.name].type is not Type.TEXT:
        texts = sorted(name for name, m in CATALOG.items() if m.type is Type.TEXT)
        raise UserError(f"`{metric}` is not a text field; the text fields are {', '.join(texts)}")
    values = metric_values_select([ref], tenant_sources(tenant), dt.datetime.now(dt.UTC))
    column = values.subquery("metric_values").c.m0
    statement = (
        select(column, func.count())
        .where(column.is_not(None))
        .group_by(column)
        .order_by(func.count().desc(), column)
        .limit(first)
    )
    return [(row[0], int(row[1])) for row in await connection.execute(statement)]
