"""Engine benchmarks: a full run against a hand-written SQL statement and against pandas, and
incremental updates of one customer after one new order.

    TIERWISE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/tw_perf \\
        python benchmarks/bench_engine.py --customers 1000000 --data /tmp/twdata

The first run generates the demo data (1M customers give about 10M orders and 8M events; the
CSVs are kept in ``--data`` and reused) and imports it into tenant ``--tenant``, in chunks of
``--chunk`` rows with ANALYZE between; later runs find the tenant loaded and reuse it. Then,
side by side in one process:

- full: Tierwise's compiled statement and the hand-written one, each inserting every
  customer's tier into a temporary table, alternating which goes first, ``--repeat`` times;
  then ``evaluate()`` from empty memberships (writes every membership and transition) and once
  more with nothing changed, ``--runs`` times. Both statements, and the memberships, are
  asserted to give the same tier to every customer.
- incremental: ``--updates`` single-order imports for random existing customers, each
  refreshing that customer's tiers in the import's transaction (p50/p99). The benchmark's
  orders are deleted and those customers' rollups and tiers restored afterwards.
- command: the whole ``tierwise evaluate --scheme bench --as-of DATE --format json`` command
  (a new process: start-up, connecting, the run, the report) against one hand-written
  statement that returns the same counts and revenue per tier as of DATE, over the same
  customers (those who existed by then), alternating which goes first, ``--repeat`` times;
  asserted equal. The command's start-up is timed alone too (``evaluate --help``), and the
  same run in this process, by phase: what the command spends beyond the statement.
- pandas: the same tiers the way an analyst would compute them without Tierwise (orders,
  customers and events read from Postgres, grouped in pandas), ``--pandas-repeat`` times;
  asserted equal. pandas is not a dependency of Tierwise: ``pip install pandas`` first.

- http: the incremental update end to end, one order per ``recordOrders`` request to a
  ``tierwise serve`` of its own (a JWT verified, as deployed), ``--updates`` of them (p50/p99).

- file: as incremental, each order in a one-row CSV file given to ``import_file`` (what
  ``tierwise import orders FILE`` does, less the command's start-up).

Use ``--only full,incremental,file,http,command,pandas`` to pick, ``--explain`` to print the plan
and time of every statement of one incremental update (auto_explain, needs a superuser).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import itertools
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Select, column, make_url, select, table, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl import compile_scheme
from service.config import load_settings
from service.data import demo_data, rollups
from service.data.ingest import import_file, import_rows
from service.data.records import Kind
from service.db.database import create_engine, database_url, plain_url
from service.engine import evaluation
from service.engine.evaluation import evaluate, refresh_affected
from service.engine.schemes import find, publish
from service.engine.sources import tenant_sources

SCHEME = "bench"
RULES = """\
# Ten tiers over windowed order metrics, tenure and event counts; no population metrics, so a
# single hand-written statement can compute the same thing.
scheme bench "Benchmark: ten tiers" {
  tier Prospect   when frequency = 0
  tier VIP        when monetary(365 days) >= 20000 and frequency(90 days) >= 6
  tier Gold       when monetary(365 days) >= 5000 and recency < 60 days
  tier Gadgeteer  when monetary(category "electronics", 180 days) >= 2000
  tier New        when tenure < 30 days and frequency = 1
  tier Engaged    when count(event "login", 30 days) >= 2 and recency < 90 days
  tier Regular    when frequency(90 days) >= 2
  tier Unhappy    when count(event "complaint", 90 days) >= 1 and recency < 180 days
  tier Declining  when recency < 180 days
  tier Churned    otherwise
}
"""
TIERS = (
    "Prospect",
    "VIP",
    "Gold",
    "Gadgeteer",
    "New",
    "Engaged",
    "Regular",
    "Unhappy",
    "Declining",
    "Churned",
)

# The same tiers written by hand: one GROUP BY over orders, one over events, both with FILTER
# aggregates, LEFT JOINed to the customers, one CASE. Window starts are bound parameters
# computed in Python (as_of - N days), as the compiler does. Order rows are classified as
# the catalog does (dsl/catalog.py): cancelled rows count nowhere; `monetary` nets the other
# rows (refunds are negative); frequency, recency and tenure count purchases: sales not
# cancelled, not refunds, and not fully refunded by the refunds linked to them before as_of.
HAND_SQL = """
SELECT c.id AS customer_id,
  CASE
    WHEN coalesce(o.n, 0) = 0 THEN 'Prospect'
    WHEN o.m365 >= 20000 AND o.n90 >= 6 THEN 'VIP'
    WHEN o.m365 >= 5000 AND o.last_at > :d60 THEN 'Gold'
    WHEN o.electronics180 >= 2000 THEN 'Gadgeteer'
    WHEN coalesce(c.registered_at, o.first_at) > :d30
     AND coalesce(c.registered_at, o.first_at) <= :as_of AND o.n = 1 THEN 'New'
    WHEN e.logins30 >= 2 AND o.last_at > :d90 THEN 'Engaged'
    WHEN o.n90 >= 2 THEN 'Regular'
    WHEN e.complaints90 >= 1 AND o.last_at > :d180 THEN 'Unhappy'
    WHEN o.last_at > :d180 THEN 'Declining'
    ELSE 'Churned'
  END AS tier
FROM customers c
LEFT JOIN (
  SELECT customer_id,
         count(*) FILTER (WHERE purchase) AS n,
         min(ordered_at) FILTER (WHERE purchase) AS first_at,
         max(ordered_at) FILTER (WHERE purchase) AS last_at,
         sum(amount) FILTER (WHERE counted AND ordered_at >= :d365) AS m365,
         count(*) FILTER (WHERE purchase AND ordered_at >= :d90) AS n90,
         sum(amount) FILTER (WHERE counted AND category = 'electronics' AND ordered_at >= :d180)
           AS electronics180
  FROM (
    SELECT d.customer_id, d.ordered_at, d.amount, d.category, d.status <> 'cancelled' AS counted,
           d.status <> 'cancelled' AND d.amount >= 0 AND d.refund_of IS NULL
             AND (r.refunded IS NULL OR r.refunded < d.amount) AS purchase
    FROM orders d
    LEFT JOIN (
      SELECT customer_id, refund_of, -sum(amount) AS refunded
      FROM orders
      WHERE tenant_id = :t AND ordered_at < :as_of AND status <> 'cancelled'
        AND refund_of IS NOT NULL
      GROUP BY customer_id, refund_of
    ) r ON r.customer_id = d.customer_id AND r.refund_of = d.external_id
    WHERE d.tenant_id = :t AND d.ordered_at < :as_of
  ) classified
  GROUP BY customer_id
) o ON o.customer_id = c.id
LEFT JOIN (
  SELECT customer_id,
         count(*) FILTER (WHERE type = 'login' AND occurred_at >= :d30) AS logins30,
         count(*) FILTER (WHERE type = 'complaint' AND occurred_at >= :d90) AS complaints90
  FROM events
  WHERE tenant_id = :t AND type IN ('login', 'complaint') AND occurred_at < :as_of
  GROUP BY customer_id
) e ON e.customer_id = c.id
WHERE c.tenant_id = :t
"""


def hand_params(tenant: str, as_of: dt.datetime) -> dict[str, Any]:
    params: dict[str, Any] = {"t": tenant, "as_of": as_of}
    for days in (30, 60, 90, 180, 365):
        params[f"d{days}"] = as_of - dt.timedelta(days=days)
    return params


def median_ms(times: Sequence[float]) -> float:
    return statistics.median(times) * 1000


def percentile(times: Sequence[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def runs(times: Sequence[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


# --- data ------------------------------------------------------------------------------------

_KINDS: tuple[tuple[Kind, str, Callable[..., Any], tuple[str, ...]], ...] = (
    (Kind.customers, "customers", demo_data.customer_rows, demo_data.CUSTOMER_FIELDS),
    (Kind.orders, "orders", demo_data.order_rows, demo_data.ORDER_FIELDS),
    (Kind.events, "events", demo_data.event_rows, demo_data.EVENT_FIELDS),
)


async def count_rows(engine: AsyncEngine, tenant: str) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            name: int(
                await connection.scalar(
                    text(f"SELECT count(*) FROM {name} WHERE tenant_id = :t"), {"t": tenant}
                )
                or 0
            )
            for _, name, _, _ in _KINDS
        }


def chunks(path: Path, rows: int) -> Iterator[Path]:
    """The CSV in files of at most ``rows`` rows, each with the header (the demo data has one
    row per line), written beside it one at a time."""
    with path.open("rb") as source:
        header = source.readline()
        for number in itertools.count():
            lines = list(itertools.islice(source, rows))
            if not lines:
                return
            part = path.with_name(f".{path.stem}.part{number}.csv")
            part.write_bytes(header + b"".join(lines))
            yield part


async def analyze(
    engine: AsyncEngine,
    tables: Sequence[str] = ("customers", "orders", "events", "customer_metrics"),
) -> None:
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        for name in tables:
            await connection.execute(text(f"VACUUM ANALYZE {name}"))


async def load(
    engine: AsyncEngine, tenant: str, customers: int, folder: Path, chunk_rows: int
) -> None:
    """Generate (unless the CSV is there) and import each kind the tenant has no rows of.

    Imported in chunks with ANALYZE after each: in one transaction of 10M orders into a new
    tenant, the planner still believes the statistics (no rows of that tenant) and the
    rollup statements of ingest ran for many minutes (see docs/benchmarks.md)."""
    config = demo_data.DemoConfig(customers=customers, seed=42)
    counts = await count_rows(engine, tenant)
    if not counts["orders"]:
        await demo_data.set_up_tenant(engine, tenant, config)
    for kind, name, rows, fields in _KINDS:
        if counts[name]:
            continue
        path = folder / f"{name}.csv"
        if not path.exists():
            start = time.perf_counter()
            written = demo_data.write_csv(rows(config), path, fields)
            print(f"generated {written:,} {name} in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        imported = 0
        for part in chunks(path, chunk_rows):
            imported += (await import_file(engine, kind, tenant, part)).rows
            part.unlink()
            await analyze(engine)
        print(f"imported {imported:,} {name} in {time.perf_counter() - start:.0f} s")
    counts = await count_rows(engine, tenant)
    print(
        f"tenant {tenant}: {counts['customers']:,} customers, {counts['orders']:,} orders, "
        f"{counts['events']:,} events"
    )


async def publish_scheme(engine: AsyncEngine, tenant: str) -> None:
    async with engine.begin() as connection:
        await publish(connection, tenant, RULES)


# --- 1. full run -----------------------------------------------------------------------------

_ENGINE_TIERS = table("engine_tiers", column("customer_id"), column("tier"))


async def _temp(connection: AsyncConnection, name: str) -> None:
    await connection.execute(
        text(f"CREATE TEMP TABLE IF NOT EXISTS {name} (customer_id bigint, tier text)")
    )
    await connection.execute(text(f"TRUNCATE {name}"))


async def engine_select(connection: AsyncConnection, tenant: str, as_of: dt.datetime) -> float:
    """Compile the published scheme and insert its result into ``engine_tiers``: seconds."""
    start = time.perf_counter()
    scheme = await find(connection, tenant, SCHEME)
    statement: Select[Any] = compile_scheme(scheme.checked, tenant_sources(tenant), as_of)
    result = statement.subquery("result")
    await connection.execute(
        _ENGINE_TIERS.insert().from_select(
            ["customer_id", "tier"], select(result.c.customer_id, result.c.tier)
        )
    )
    return time.perf_counter() - start


async def hand_select(connection: AsyncConnection, tenant: str, as_of: dt.datetime) -> float:
    """The hand-written statement into ``hand_tiers``: seconds."""
    start = time.perf_counter()
    await connection.execute(
        text(f"INSERT INTO hand_tiers (customer_id, tier) {HAND_SQL}"), hand_params(tenant, as_of)
    )
    return time.perf_counter() - start


async def differences(connection: AsyncConnection, left: str, right: str) -> int:
    """Customers whose tier differs between two (customer_id, tier) relations."""
    found = await connection.scalar(
        text(
            f"SELECT count(*) FROM ({left}) a FULL JOIN ({right}) b USING (customer_id) "
            "WHERE a.tier IS DISTINCT FROM b.tier"
        )
    )
    return int(found or 0)


async def bench_full(engine: AsyncEngine, tenant: str, repeat: int, evaluations: int) -> None:
    as_of = dt.datetime.now(dt.UTC)
    engine_times: list[float] = []
    hand_times: list[float] = []
    for index in range(repeat):
        async with engine.begin() as connection:
            await connection.execute(text("SET LOCAL work_mem = '256MB'"))  # as evaluate()
            await _temp(connection, "engine_tiers")
            await _temp(connection, "hand_tiers")
            pair = [
                (engine_times, engine_select(connection, tenant, as_of)),
                (hand_times, hand_select(connection, tenant, as_of)),
            ]
            if index % 2:
                pair.reverse()  # alternate which goes first: neither always gets a warm cache
            for times, measured in pair:
                times.append(await measured)
            if index == 0:
                wrong = await differences(
                    connection, "SELECT * FROM engine_tiers", "SELECT * FROM hand_tiers"
                )
                assert wrong == 0, f"{wrong} customers differ between Tierwise and hand SQL"
                count = await connection.scalar(text("SELECT count(*) FROM engine_tiers"))
                tiers = await connection.execute(
                    text("SELECT tier, count(*) FROM engine_tiers GROUP BY tier ORDER BY 2 DESC")
                )
                print(f"full: {count:,} customers, same tier in both statements")
                print("      " + ", ".join(f"{tier} {n:,}" for tier, n in tiers))
            await connection.rollback()
    ratios = [e / h for e, h in zip(engine_times, hand_times, strict=True)]
    print(
        f"full: compiled statement median {median_ms(engine_times):,.0f} ms, hand-written "
        f"median {median_ms(hand_times):,.0f} ms, ratio of medians "
        f"{statistics.median(engine_times) / statistics.median(hand_times):.2f} "
        f"(median of paired ratios {statistics.median(ratios):.2f}; {repeat} repeats)"
    )
    print(f"      compiled s: {runs(engine_times)}")
    print(f"      hand s:     {runs(hand_times)}")

    first: list[float] = []
    again: list[float] = []
    moved: list[int] = []
    written = 0
    for index in range(evaluations):
        await clear_memberships(engine, tenant)
        start = time.perf_counter()
        result = await evaluate(engine, tenant, SCHEME, trigger="bench")
        first.append(time.perf_counter() - start)
        assert result is not None
        written = result.customers
        if index == 0:
            async with engine.connect() as connection:
                await _temp(connection, "hand_tiers")
                await hand_select(connection, tenant, result.as_of)
                wrong = await differences(
                    connection,
                    "SELECT customer_id, tier FROM memberships "
                    f"WHERE tenant_id = '{tenant}' AND scheme_key = '{SCHEME}'",
                    "SELECT * FROM hand_tiers",
                )
                await connection.rollback()
            assert wrong == 0, f"{wrong} memberships differ from the hand-written statement"
            print(f"evaluate: {result.changed:,} transitions written, memberships = hand SQL")
        start = time.perf_counter()
        second = await evaluate(engine, tenant, SCHEME, trigger="bench")
        again.append(time.perf_counter() - start)
        assert second is not None
        # Not always 0: time moved on, and a few orders left a window or crossed a recency line.
        moved.append(second.changed)
    print(
        f"evaluate(): first run (writes {written:,} memberships) median "
        f"{median_ms(first):,.0f} ms; second run (no changes) median {median_ms(again):,.0f} ms; "
        f"{evaluations} runs each; vs hand-written statement: "
        f"{statistics.median(first) / statistics.median(hand_times):.2f} and "
        f"{statistics.median(again) / statistics.median(hand_times):.2f}"
    )
    print(f"      first s:  {runs(first)}")
    print(f"      second s: {runs(again)} (transitions: {', '.join(map(str, moved))})")


async def clear_memberships(engine: AsyncEngine, tenant: str) -> None:
    async with engine.begin() as connection:
        for name in ("memberships", "transitions"):
            await connection.execute(
                text(f"DELETE FROM {name} WHERE tenant_id = :t AND scheme_key = :k"),
                {"t": tenant, "k": SCHEME},
            )
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE memberships"))
        await connection.execute(text("VACUUM ANALYZE transitions"))


# --- 1b. the whole command ----------------------------------------------------------------

# HAND_SQL's tiers, counted with each tier's revenue (all orders before :as_of), over the
# customers who existed by then (registered, recorded, or with an order or event before it),
# as a backtest counts them.
HAND_COUNTS_SQL = f"""
SELECT tier, count(*) AS customers, coalesce(sum(revenue), 0) AS revenue
FROM (
  {
    HAND_SQL.replace(
        "AS electronics180", "AS electronics180, sum(amount) FILTER (WHERE counted) AS revenue"
    )
    .replace("END AS tier", "END AS tier, o.revenue")
    .replace(
        "WHERE c.tenant_id = :t",
        "WHERE c.tenant_id = :t AND (c.registered_at < :as_of OR c.created_at < :as_of"
        " OR o.customer_id IS NOT NULL OR EXISTS (SELECT FROM events x WHERE x.tenant_id = :t"
        " AND x.customer_id = c.id AND x.occurred_at < :as_of OFFSET 0))",
    )
}
) tiers
GROUP BY tier
"""


# The checkout whose `tierwise` the command step runs (--command-from): this one by default.
COMMAND_FROM: Path | None = None


def tierwise_command(*args: str) -> tuple[float, str]:
    """Run ``tierwise ARGS`` as a user would (a new process); seconds and its output."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=COMMAND_FROM,  # `python -c` imports `service` from there first
    )
    return time.perf_counter() - start, done.stdout


async def hand_counts(
    engine: AsyncEngine, tenant: str, as_of: dt.datetime
) -> tuple[float, dict[str, tuple[int, float]]]:
    """The hand-written statement's counts and revenue per tier: seconds (connecting
    included) and the figures."""
    start = time.perf_counter()
    async with engine.connect() as connection:
        await connection.execute(text("SET work_mem = '256MB'"))  # as evaluate()
        rows = (await connection.execute(text(HAND_COUNTS_SQL), hand_params(tenant, as_of))).all()
    seconds = time.perf_counter() - start
    return seconds, {row.tier: (int(row.customers), float(row.revenue)) for row in rows}


async def bench_command(engine: AsyncEngine, tenant: str, repeat: int, days_back: int) -> None:
    as_of = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_back)).replace(microsecond=0)
    command = ("evaluate", "--scheme", SCHEME, "--as-of", as_of.isoformat(), "--tenant", tenant)
    command_times: list[float] = []
    hand_times: list[float] = []
    startup: list[float] = []
    in_process: list[float] = []
    spent = time_phases()
    for index in range(repeat):
        await engine.dispose()  # the hand side connects anew, as the command does
        if index % 2:
            hand, figures = await hand_counts(engine, tenant, as_of)
            took, output = tierwise_command(*command, "--format", "json")
        else:
            took, output = tierwise_command(*command, "--format", "json")
            hand, figures = await hand_counts(engine, tenant, as_of)
        command_times.append(took)
        hand_times.append(hand)
        startup.append(tierwise_command("evaluate", "--help")[0])
        # The same run in this process: the command's time less its start-up, and by phase.
        start = time.perf_counter()
        await evaluation.evaluate_all(engine, tenant, keys=[SCHEME], as_of=as_of, trigger="bench")
        in_process.append(time.perf_counter() - start)
        reported = {
            row["tier"]: (row["customers"], row["revenue"])
            for row in json.loads(output)
            if row["customers"]
        }
        assert reported.keys() == figures.keys(), (reported, figures)
        for tier, (customers, revenue) in figures.items():
            assert reported[tier][0] == customers, (tier, reported[tier], customers)
            assert abs(reported[tier][1] - revenue) <= 0.01, (tier, reported[tier], revenue)
        if index == 0:
            total = sum(n for n, _ in figures.values())
            print(f"command: backtest as of {as_of:%Y-%m-%d %H:%M}, {total:,} customers, same")
            print(
                "         counts and revenue per tier as the hand-written statement: "
                + ", ".join(f"{t} {n:,}" for t, (n, _) in sorted(figures.items()))
            )
    ratios = [c / h for c, h in zip(command_times, hand_times, strict=True)]
    hand = statistics.median(hand_times)
    print(
        f"command: `tierwise evaluate --as-of` median {median_ms(command_times):,.0f} ms, "
        f"hand-written statement median {hand * 1000:,.0f} ms, ratio of medians "
        f"{statistics.median(command_times) / hand:.2f} (median of paired ratios "
        f"{statistics.median(ratios):.2f}; {repeat} repeats; target 1.3)"
    )
    print(
        f"         of which start-up (`tierwise evaluate --help`) median {median_ms(startup):,.0f}"
        f" ms ({statistics.median(startup) / hand:.2f} x the statement); the same run in "
        f"process median {median_ms(in_process):,.0f} ms "
        f"({statistics.median(in_process) / hand:.2f} x the statement)"
    )
    print(f"         command s:    {runs(command_times)}")
    print(f"         hand s:       {runs(hand_times)}")
    print(f"         start-up s:   {runs(startup)}")
    print(f"         in process s: {runs(in_process)}")
    for label, phase in spent.items():
        print(f"         {label:<40} median {median_ms(phase):8.1f} ms ({len(phase)} calls)")


# --- 2. incremental --------------------------------------------------------------------------


async def random_customers(engine: AsyncEngine, tenant: str, n: int, seed: int) -> list[str]:
    async with engine.connect() as connection:
        ids = list(
            await connection.scalars(
                text("SELECT external_id FROM customers WHERE tenant_id = :t ORDER BY id"),
                {"t": tenant},
            )
        )
    return random.Random(seed).choices(ids, k=n)


def one_order(order_id: str, customer: str, rng: random.Random) -> dict[str, str]:
    return {
        "order_id": order_id,
        "customer_id": customer,
        "ordered_at": dt.datetime.now(dt.UTC).isoformat(),
        "amount": f"{rng.randrange(500, 500_000) / 100:.2f}",
        "currency": "CNY",
        "category": rng.choice(("electronics", "apparel", "home", "food")),
        "channel": "web",
    }


async def add_order(engine: AsyncEngine, tenant: str, row: dict[str, str]) -> float:
    start = time.perf_counter()
    await import_rows(
        engine,
        Kind.orders,
        tenant,
        enumerate([row], 2),
        source="bench",
        after_load=evaluation.refresh_affected,  # looked up here, so --breakdown can time it
    )
    return time.perf_counter() - start


async def add_order_file(
    engine: AsyncEngine, tenant: str, row: dict[str, str], path: Path
) -> float:
    """`add_order` through a one-row CSV file, as `tierwise import orders FILE` reads it."""
    path.write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n", encoding="utf-8")
    start = time.perf_counter()
    await import_file(engine, Kind.orders, tenant, path, after_load=evaluation.refresh_affected)
    return time.perf_counter() - start


async def remove_bench_orders(engine: AsyncEngine, tenant: str, prefix: str) -> int:
    """Delete the benchmark's orders; recompute those customers' rollups and tiers. Returns
    the number of customers."""
    async with engine.begin() as connection:
        await connection.execute(text(rollups.CREATE_AFFECTED))
        removed = await connection.execute(
            text(
                "WITH gone AS (DELETE FROM orders WHERE tenant_id = :t AND external_id LIKE :p "
                "RETURNING customer_id) "
                "INSERT INTO affected_customers SELECT DISTINCT customer_id, true FROM gone"
            ),
            {"t": tenant, "p": prefix + "%"},
        )
        await rollups.refresh_affected(connection, tenant)
        await refresh_affected(connection, tenant, trigger="bench cleanup")
        return int(removed.rowcount or 0)


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """The CPU time (user and system) each process has used so far, read from /proc: what an
    update costs whatever else the machine runs (wall time on a shared machine is not)."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended, or not on this machine
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


async def backends(engine: AsyncEngine) -> list[int]:
    """The server processes of the benchmark's database (the database on this machine)."""
    async with engine.connect() as connection:
        return list(
            await connection.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        )


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


async def bench_incremental(
    engine: AsyncEngine, tenant: str, updates: int, warmup: int, breakdown: bool, *, file: bool
) -> None:
    """Single-order imports with their refresh, in this process: rows given to `import_rows`
    (what the API does), or with ``file`` a one-row CSV file to `import_file` (what
    `tierwise import` does, less the command's start-up)."""
    # What autovacuum would have done by now after the full runs' million-row writes (it is
    # off on the benchmark machine): without it the planner believes the memberships are
    # still empty and each update scans all of them (see docs/benchmarks.md).
    await analyze(engine, ("memberships", "transitions"))
    spent = time_phases() if breakdown else {}
    prefix = f"bench-{secrets.token_hex(4)}-"
    rng = random.Random(11)
    customers = await random_customers(engine, tenant, warmup + updates, seed=11)
    times: list[float] = []
    server: dict[int, float] = {}
    client = 0.0
    folder = Path(tempfile.mkdtemp())
    try:
        for index, customer in enumerate(customers):
            if index == warmup:
                spent.clear()
                server = cpu_seconds(await backends(engine))
                client = time.process_time()
            row = one_order(f"{prefix}{index}", customer, rng)
            if file:
                elapsed = await add_order_file(engine, tenant, row, folder / "order.csv")
            else:
                elapsed = await add_order(engine, tenant, row)
            if index >= warmup:
                times.append(elapsed)
        client = time.process_time() - client
        server_spent = cpu_spent(server, cpu_seconds(await backends(engine)))
        phases = {label: list(phase) for label, phase in spent.items()}
    finally:
        removed = await remove_bench_orders(engine, tenant, prefix)
        (folder / "order.csv").unlink(missing_ok=True)
        folder.rmdir()
    what = "one-row CSV files imported" if file else "single-order imports"
    print(
        f"{'file' if file else 'incremental'}: {len(times)} {what} with refresh ({warmup} "
        "warm-up not "
        f"counted): p50 {percentile(times, 0.5) * 1000:.1f} ms, p90 "
        f"{percentile(times, 0.9) * 1000:.1f} ms, p99 {percentile(times, 0.99) * 1000:.1f} ms, "
        f"max {max(times) * 1000:.1f} ms (target p99 under 20 ms; the orders of {removed} "
        "customers removed afterwards); CPU per update: this process "
        f"{client / len(times) * 1000:.2f} ms, Postgres {server_spent / len(times) * 1000:.2f} ms"
    )
    for label, phase in phases.items():
        print(
            f"      {label:<36} median {median_ms(phase):6.1f} ms, "
            f"p99 {percentile(phase, 0.99) * 1000:6.1f} ms ({len(phase)} calls)"
        )


RECORD_ORDER = """mutation ($orders: [OrderInput!]!) {
  recordOrders(orders: $orders) { inserted rejected }
}"""


async def bench_http(engine: AsyncEngine, url: str, tenant: str, updates: int, warmup: int) -> None:
    """The incremental update end to end: one order per `recordOrders` request to a `tierwise
    serve` (one worker, a JWT of the ingest role verified, as deployed), one request at a
    time over a kept-alive connection; the time from sending to the answer."""
    import httpx

    from service.access.auth import Role, issue_token
    from tests.support import serve_process

    secret = secrets.token_urlsafe(32)
    token = issue_token(secret, tenant, Role.ingest, "bench")
    prefix = f"bench-{secrets.token_hex(4)}-"
    rng = random.Random(12)
    customers = await random_customers(engine, tenant, warmup + updates, seed=12)
    times: list[float] = []
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            serve_process(
                make_url(url), tenant, Path(folder) / "serve.log",
                auth_required="true", jwt_secret=secret, rate_limit_per_minute="0",
            ) as (process, base),
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client,
        ):  # fmt: skip
            before: dict[int, float] = {}
            for index, customer in enumerate(customers):
                if index == warmup:
                    before = cpu_seconds([process.pid, *await backends(engine)])
                row = one_order(f"{prefix}{index}", customer, rng)
                order = {
                    "id": row["order_id"], "customerId": customer, "orderedAt": row["ordered_at"],
                    "amount": row["amount"], "currency": row["currency"],
                    "category": row["category"], "channel": row["channel"],
                }  # fmt: skip
                start = time.perf_counter()
                response = client.post(
                    "/graphql", json={"query": RECORD_ORDER, "variables": {"orders": [order]}}
                )
                elapsed = time.perf_counter() - start
                answer = response.json()
                if answer.get("data", {}).get("recordOrders", {}).get("inserted") != 1:
                    raise SystemExit(f"recordOrders failed: {answer}")
                if index >= warmup:
                    times.append(elapsed)
            after = cpu_seconds([process.pid, *await backends(engine)])
            serve_spent = after.pop(process.pid, 0.0) - before.pop(process.pid, 0.0)
            server_spent = cpu_spent(before, after)
    finally:
        removed = await remove_bench_orders(engine, tenant, prefix)
    print(
        f"http: {len(times)} recordOrders of one order over HTTP ({warmup} warm-up not "
        f"counted): p50 {percentile(times, 0.5) * 1000:.1f} ms, p90 "
        f"{percentile(times, 0.9) * 1000:.1f} ms, p99 {percentile(times, 0.99) * 1000:.1f} ms, "
        f"max {max(times) * 1000:.1f} ms (target p99 under 20 ms; the orders of {removed} "
        "customers removed afterwards); CPU per request: tierwise serve "
        f"{serve_spent / len(times) * 1000:.2f} ms, Postgres "
        f"{server_spent / len(times) * 1000:.2f} ms"
    )


def time_phases() -> dict[str, list[float]]:
    """Wrap the functions an incremental update goes through so each call's time is recorded
    (by name, seconds); nested ones are included in their callers'."""
    import functools

    from service.data import ingest
    from service.engine import evaluation, schemes

    spent: dict[str, list[float]] = {}

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        if asyncio.iscoroutinefunction(original):

            @functools.wraps(original)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    spent.setdefault(label, []).append(time.perf_counter() - start)

        else:

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    spent.setdefault(label, []).append(time.perf_counter() - start)

        setattr(owner, name, wrapper)

    for owner, name, label in (
        (ingest._Stage, "open", "ingest: open (lock, temp tables)"),
        (ingest._Stage, "load_rows", "ingest: parse + COPY row"),
        (ingest._Stage, "upsert", "ingest: upsert (incl. rollup)"),
        (evaluation, "refresh_affected", "refresh_affected (all below)"),
        (schemes, "current", "  schemes.current (parse + check)"),
        (evaluation, "_lock", "  run lock"),
        (evaluation, "compile_scheme", "  compile_scheme (Python)"),
        (evaluation, "_stage", "  _stage (compiled statement)"),
        (evaluation, "_apply", "  _apply (memberships)"),
        (evaluation, "_start_run", "  _start_run (the run recorded)"),
        (evaluation, "analyze_stale", "  analyze_stale"),
        (evaluation, "_referenced_then", "  _referenced_then (backtest's in tier)"),
        (evaluation, "_count", "  _count (per tier, from new_tiers)"),
    ):
        timed(owner, name, label)
    return spent


async def explain_incremental(engine: AsyncEngine, tenant: str) -> None:
    """One incremental update with every statement's plan and duration sent to the client."""
    [customer] = await random_customers(engine, tenant, 1, seed=5)
    prefix = f"bench-{secrets.token_hex(4)}-"
    messages: list[str] = []

    def listener(_: object, message: Any) -> None:
        messages.append(str(message.message))

    async def configure(connection: AsyncConnection) -> None:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        raw.add_log_listener(listener)
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            await connection.execute(text(setting))

    explaining = create_engine(engine.url, pool_size=1, max_overflow=1)
    async with explaining.connect() as connection:
        await configure(connection)
        await connection.commit()
    try:
        elapsed = await add_order(
            explaining, tenant, one_order(f"{prefix}0", customer, random.Random(5))
        )
    finally:
        await explaining.dispose()
        await remove_bench_orders(engine, tenant, prefix)
    for message in messages:
        print(message)
        print("-" * 100)
    print(f"one incremental update with auto_explain: {elapsed * 1000:.1f} ms")


# --- 3. pandas -------------------------------------------------------------------------------


def pandas_tiers(
    url: str, tenant: str, as_of: dt.datetime, how: str
) -> tuple[Any, dict[str, float]]:
    """The tiers as an analyst computes them without Tierwise: each table read from Postgres
    (``how``: "copy", COPY ... TO STDOUT as CSV into pandas.read_csv; "read_sql",
    pandas.read_sql over SQLAlchemy and psycopg), windows and counts by groupby, the tier by
    numpy.select in rule order (first match wins)."""
    import numpy as np  # not dependencies of Tierwise: installed by hand for the benchmark
    import pandas as pd  # type: ignore[import-untyped]
    import psycopg

    phases: dict[str, float] = {}
    start = time.perf_counter()

    def read(sql: str, dates: list[str]) -> Any:
        if how == "read_sql":
            frame = pd.read_sql(text(sql), alchemy)
            for name in dates:
                frame[name] = pd.to_datetime(frame[name], utc=True)
            if "amount" in frame:
                frame["amount"] = frame["amount"].astype(float)  # numeric arrives as Decimal
            return frame
        copying = time.perf_counter()
        buffer = io.BytesIO()
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)") as copy,
        ):
            for block in copy:
                buffer.write(block)
        buffer.seek(0)
        parsing = time.perf_counter()
        phases["copy"] = phases.get("copy", 0.0) + parsing - copying
        frame = pd.read_csv(buffer)
        for name in dates:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        phases["parse"] = phases.get("parse", 0.0) + time.perf_counter() - parsing
        return frame

    t = tenant.replace("'", "''")
    alchemy = create_sync_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with psycopg.connect(url) as connection:
        connection.execute("SET timezone = 'UTC'")
        customers = read(
            f"SELECT id, registered_at FROM customers WHERE tenant_id = '{t}'", ["registered_at"]
        )
        orders = read(
            f"SELECT customer_id, amount, ordered_at, category FROM orders WHERE tenant_id = '{t}'",
            ["ordered_at"],
        )
        events = read(
            "SELECT customer_id, type, occurred_at FROM events "
            f"WHERE tenant_id = '{t}' AND type IN ('login', 'complaint')",
            ["occurred_at"],
        )
    alchemy.dispose()
    phases["read"] = time.perf_counter() - start
    start = time.perf_counter()
    ts = pd.Timestamp(as_of)
    cut = {days: pd.Timestamp(as_of - dt.timedelta(days=days)) for days in (30, 60, 90, 180, 365)}
    orders = orders[orders.ordered_at < ts]
    events = events[events.occurred_at < ts]
    by_customer = orders.groupby("customer_id")
    facts = pd.DataFrame(
        {
            "n": by_customer.size(),
            "first_at": by_customer.ordered_at.min(),
            "last_at": by_customer.ordered_at.max(),
        }
    )
    recent = orders[orders.ordered_at >= cut[365]]
    facts["m365"] = recent.groupby("customer_id").amount.sum().round(4)
    facts["n90"] = orders[orders.ordered_at >= cut[90]].groupby("customer_id").size()
    gadgets = orders[(orders.category == "electronics") & (orders.ordered_at >= cut[180])]
    facts["electronics180"] = gadgets.groupby("customer_id").amount.sum().round(4)
    logins = events[(events.type == "login") & (events.occurred_at >= cut[30])]
    complaints = events[(events.type == "complaint") & (events.occurred_at >= cut[90])]
    df = customers.set_index("id").join(facts)
    df["logins30"] = logins.groupby("customer_id").size()
    df["complaints90"] = complaints.groupby("customer_id").size()
    for name in ("n", "m365", "n90", "electronics180", "logins30", "complaints90"):
        df[name] = df[name].fillna(0)
    since = df.registered_at.fillna(df.first_at)
    conditions = [
        df.n == 0,
        (df.m365 >= 20000) & (df.n90 >= 6),
        (df.m365 >= 5000) & (df.last_at > cut[60]),
        df.electronics180 >= 2000,
        (since > cut[30]) & (since <= ts) & (df.n == 1),
        (df.logins30 >= 2) & (df.last_at > cut[90]),
        df.n90 >= 2,
        (df.complaints90 >= 1) & (df.last_at > cut[180]),
        df.last_at > cut[180],
    ]
    df["tier"] = np.select(conditions, list(TIERS[:-1]), default=TIERS[-1])
    phases["compute"] = time.perf_counter() - start
    return df[["tier"]].reset_index(names="customer_id"), phases


async def bench_pandas(
    engine: AsyncEngine, url: str, tenant: str, repeat: int, hand_repeat: int, how: str
) -> None:
    as_of = dt.datetime.now(dt.UTC)
    totals: list[float] = []
    reads: list[float] = []
    hand_times: list[float] = []
    frame: Any = None
    for index in range(max(repeat, hand_repeat)):
        if index < hand_repeat:
            async with engine.begin() as connection:
                await connection.execute(text("SET LOCAL work_mem = '256MB'"))
                await _temp(connection, "hand_tiers")
                hand_times.append(await hand_select(connection, tenant, as_of))
                await connection.rollback()
        if index < repeat:
            frame = None  # free the previous result before measuring again
            start = time.perf_counter()
            frame, phases = await asyncio.to_thread(pandas_tiers, url, tenant, as_of, how)
            totals.append(time.perf_counter() - start)
            reads.append(phases["read"])
            print(
                "      pandas phases s: "
                + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items())
            )
    print(f"pandas: checking {len(frame):,} tiers against the hand-written statement")
    await check_frame(engine, tenant, as_of, frame)
    scheme_median = statistics.median(hand_times)
    print(
        f"pandas ({how}): median {median_ms(totals):,.0f} ms (reading {median_ms(reads):,.0f} ms), "
        f"{repeat} repeats; hand-written statement in the same run {median_ms(hand_times):,.0f} "
        f"ms ({hand_repeat} repeats): pandas / hand-written = "
        f"{statistics.median(totals) / scheme_median:.1f}"
    )
    print(f"      pandas s: {runs(totals)}")
    print(f"      hand s:   {runs(hand_times)}")


async def check_frame(engine: AsyncEngine, tenant: str, as_of: dt.datetime, frame: Any) -> None:
    async with engine.connect() as connection:
        await _temp(connection, "hand_tiers")
        await _temp(connection, "pandas_tiers")
        await hand_select(connection, tenant, as_of)
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        records = list(zip(frame.customer_id.tolist(), frame.tier.tolist(), strict=True))
        await raw.copy_records_to_table("pandas_tiers", records=records)
        wrong = await differences(
            connection, "SELECT * FROM pandas_tiers", "SELECT * FROM hand_tiers"
        )
        await connection.rollback()
    assert wrong == 0, f"{wrong} customers differ between pandas and the hand-written statement"
    print("pandas: same tier as the hand-written statement (so as Tierwise) for every customer")


# --- main ------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    settings = load_settings()
    if not settings.database_url:
        raise SystemExit("set TIERWISE_DATABASE_URL to a Postgres server (not the embedded one)")
    with database_url(settings) as url:
        engine = create_engine(url)
        try:
            args.data.mkdir(parents=True, exist_ok=True)
            await load(engine, args.tenant, args.customers, args.data, args.chunk)
            await publish_scheme(engine, args.tenant)
            steps: dict[str, Callable[[], Awaitable[None]]] = {
                "full": lambda: bench_full(engine, args.tenant, args.repeat, args.runs),
                "command": lambda: bench_command(engine, args.tenant, args.repeat, args.days_back),
                "incremental": lambda: bench_incremental(
                    engine, args.tenant, args.updates, args.warmup, args.breakdown, file=False
                ),
                "file": lambda: bench_incremental(
                    engine, args.tenant, args.updates, args.warmup, args.breakdown, file=True
                ),
                "http": lambda: bench_http(
                    engine, plain_url(url), args.tenant, args.updates, args.warmup
                ),
                "pandas": lambda: bench_pandas(
                    engine,
                    plain_url(url),
                    args.tenant,
                    args.pandas_repeat,
                    args.pandas_repeat,
                    args.pandas_read,
                ),
            }
            if args.explain:
                await explain_incremental(engine, args.tenant)
                return
            for name in args.only.split(","):
                await steps[name.strip()]()
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--tenant", default="perf")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "tierwise-bench",
        help="where the demo CSVs are generated, or found from an earlier run",
    )
    parser.add_argument("--chunk", type=int, default=1_000_000, help="rows per import")
    parser.add_argument("--repeat", type=int, default=5, help="statement pairs (full)")
    parser.add_argument("--runs", type=int, default=3, help="evaluate() runs (full)")
    parser.add_argument("--updates", type=int, default=500, help="single-order imports")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--pandas-repeat", type=int, default=3)
    parser.add_argument("--pandas-read", choices=("copy", "read_sql"), default="copy")
    parser.add_argument("--only", default="full,incremental,command,pandas")
    parser.add_argument(
        "--days-back", type=int, default=30, help="the --as-of of `command`: this many days ago"
    )
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--breakdown", action="store_true", help="time the phases of incremental updates"
    )
    parser.add_argument(
        "--command-from",
        type=Path,
        help="run the command step's `tierwise` from this checkout (e.g. an older commit's)",
    )
    args = parser.parse_args()
    global COMMAND_FROM
    COMMAND_FROM = args.command_from
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
