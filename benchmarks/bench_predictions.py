"""Fit time of BG/NBD and Gamma-Gamma on a synthetic summary drawn from the models themselves,
and the cost of writing every customer's predictions: numpy + COPY (what Tierwise does) against
computing the conditional expectation inside Postgres with a PL/pgSQL hypergeometric series.

Customers first buy on a day spread evenly over the year before the evaluation time and then
behave as BG/NBD and Gamma-Gamma say, with the parameters fitted on CDNOW (in days); times are
whole days, as the summary in SQL gives them.

Run: python benchmarks/bench_predictions.py [--customers N] [--database-url URL]
(with a database: the write and the PL/pgSQL comparison, in a rolled-back transaction)

End to end in Postgres (``--server``, a server's URL): creates the database
``tierwise_bench_predictions`` there, migrates it, generates ``--customers`` customers and about
``--orders`` orders inside Postgres (generate_series: importing 10M orders through files takes
far longer), then times, ``--repeat`` times each:

- the fit as `tierwise predict fit` runs it (`fit_tenant`: the summary read in SQL, BG/NBD and
  Gamma-Gamma fitted in process, every customer's predictions written), and its parts;
- full runs (`evaluate()`, every membership written from empty) of a scheme on `p_alive` and
  `clv(365 days)` and of the same scheme on plain metrics, alternating which goes first.

The database is dropped at the end (``--keep`` keeps it, and a later run reuses its data and
its model; ``--only runs`` then skips the fits):

    python benchmarks/bench_predictions.py --server postgresql://postgres@127.0.0.1:5432/postgres \\
        --customers 1000000 --orders 10000000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.data import rollups
from service.db import migrate
from service.db.database import (
    DatabaseLimits,
    async_url,
    create_engine,
    enter_tenant,
    tenant_transaction,
)
from service.engine import evaluation, schemes
from service.engine.predictions import bgnbd, gamma_gamma
from service.engine.predictions.bgnbd import BgNbd
from service.engine.predictions.gamma_gamma import GammaGamma
from service.engine.predictions.mle import Vector, compress
from service.engine.predictions.tenant import (
    DEFAULT_HORIZON_DAYS,
    Model,
    Summary,
    fit_tenant,
    predict,
    read_summary,
    write_predictions,
)

TRUE_BGNBD = BgNbd(0.2417, 30.757, 0.8145, 2.4772)
TRUE_GAMMA_GAMMA = GammaGamma(6.2496, 3.7442, 15.4435)
AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def simulate(customers: int, seed: int = 7) -> Summary:
    """Summaries of ``customers`` drawn from BG/NBD (purchases) and Gamma-Gamma (values)."""
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 365, customers).astype(np.float64)
    x, last = _draw(TRUE_BGNBD, T, rng)
    g = TRUE_GAMMA_GAMMA
    nu = rng.gamma(g.q, 1 / g.v, customers)
    # The mean of x Gamma(p, ν) values is Gamma(p·x, x·ν).
    mean = np.where(
        x > 0, rng.gamma(np.maximum(g.p * x, 1e-9), 1 / (np.maximum(x, 1) * nu)), np.nan
    )
    return Summary(np.arange(1, customers + 1, dtype=np.int64), x, np.floor(last), T, mean)


class _Clock:
    """Wall and CPU time since it was made: on a shared machine CPU time is the steadier."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __str__(self) -> str:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return f"{wall:.2f} s (CPU {cpu:.2f} s)"


# The conditional expectation in PL/pgSQL, in the same Euler-transformed form as numpy's.
_SQL_EXPECTED = """
CREATE FUNCTION pg_temp.bgnbd_expected(r float8, alpha float8, a float8, b float8, x float8,
    t_x float8, big_t float8, t float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    z float8 := t / (alpha + big_t + t);
    c float8 := a + b + x - 1;
    term float8 := 1;
    total float8 := 1;
    k integer := 0;
    alive float8 := 1;
BEGIN
    LOOP
        term := term * (a + b - 1 - r + k) * (a - 1 + k) / ((c + k) * (k + 1)) * z;
        total := total + term;
        k := k + 1;
        EXIT WHEN k > 5 AND abs(term) <= 1e-15 * abs(total);
    END LOOP;
    IF x > 0 THEN
        alive := 1 / (1 + a / (b + x - 1) * power((alpha + big_t) / (alpha + t_x), r + x));
    END IF;
    RETURN (a + b + x - 1) / (a - 1) * (1 - power(1 - z, a - 1) * total) * alive;
END $$
"""


async def database_part(url: str, summary: Summary, model: Model) -> None:
    engine = create_engine(async_url(url), pool_size=1, max_overflow=1)
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await enter_tenant(connection, "bench_predictions")
        clock = _Clock()
        written = await write_predictions(connection, "bench_predictions", model, summary, AS_OF)
        print(f"  predictions written (numpy, COPY, round, insert): {written:,} in {clock}")
        await _sql_alternative(connection, model)
        await transaction.rollback()
    await engine.dispose()


async def _sql_alternative(connection: AsyncConnection, model: Model) -> None:
    await connection.execute(text(_SQL_EXPECTED))
    m = model.bgnbd
    clock = _Clock()
    total = await connection.scalar(
        text(
            "SELECT sum(pg_temp.bgnbd_expected(:r, :alpha, :a, :b, repeat_purchases, "
            "purchase_span_days, observed_days, 365)) FROM customer_predictions"
        ),
        {"r": m.r, "alpha": m.alpha, "a": m.a, "b": m.b},
    )
    # The CPU time is this process's, idle while Postgres works: the wall time is the one.
    print(f"  the same E[Y(365)] in PL/pgSQL, one horizon, summed: {clock} ({total:,.1f})")


# --- End to end in a database of its own ------------------------------------------------------

BENCH_DATABASE = "tierwise_bench_predictions"
TENANT = "bench"
PREDICTED = """\
scheme bench_predicted "Benchmark: predicted value and churn" {
  tier Top    when percentile(clv(365 days)) > 90
  tier AtRisk when monetary > 1000 and p_alive < 0.5
  tier Active when p_alive >= 0.5
  tier Rest   otherwise
}
"""
# The same shape on the rollup's metrics (no order scan): the cheapest plain counterpart.
PLAIN = """\
scheme bench_plain "Benchmark: the same on plain metrics" {
  tier Top    when percentile(monetary) > 90
  tier AtRisk when monetary > 1000 and recency > 180 days
  tier Active when recency <= 180 days
  tier Rest   otherwise
}
"""

# The data follows the models, so that they fit: a plan per customer drawn in numpy (first
# purchase T days ago, up to three years; x repeat purchases, the last t_x days after the first,
# from BG/NBD; a mean order value 1/ν from Gamma-Gamma with p = 1), sent with COPY; the orders
# are made from it inside Postgres: the first, the last repeat at t_x and the others uniform in
# between (given x and t_x, that is where a Poisson process puts them), amounts exponential
# with mean 1/ν.
PLAN_BGNBD = BgNbd(0.8, 40.0, 0.8, 6.0)
PLAN_VALUE = GammaGamma(1.0, 4.0, 200.0)
PLAN_DAYS = 1095

_ORDERS = """
INSERT INTO orders (tenant_id, external_id, customer_id, amount, ordered_at)
SELECT :t, p.i || '-' || k, c.id, round((-ln(1 - random()) / p.nu)::numeric, 2),
       now() - make_interval(secs => 86400 * (p.big_t - CASE WHEN k = 0 THEN 0
           WHEN k = p.x THEN p.t_x ELSE random() * p.t_x END))
FROM bench_plan p JOIN customers c ON c.tenant_id = :t AND c.external_id = 'c' || p.i,
     generate_series(0, p.x) k
"""


def _draw(model: BgNbd, T: Vector, rng: np.random.Generator) -> tuple[Vector, Vector]:
    """x and t_x of customers observed for ``T`` days each, drawn from BG/NBD (dropping out
    only after a repeat purchase, as the model has it)."""
    customers = len(T)
    rate = rng.gamma(model.r, 1 / model.alpha, customers)
    dropout = rng.beta(model.a, model.b, customers)
    x = np.zeros(customers)
    last = np.zeros(customers)
    now = np.zeros(customers)
    active = np.ones(customers, dtype=bool)
    while active.any():
        now[active] += rng.exponential(1 / rate[active])
        bought = active & (now <= T)
        x[bought] += 1
        last[bought] = now[bought]
        active = bought & (rng.random(customers) >= dropout)
    return x, last


def _observed(customers: int, rng: np.random.Generator) -> Vector:
    return rng.integers(1, PLAN_DAYS, customers).astype(np.float64)


def plan(customers: int, orders: int, seed: int = 7) -> list[tuple[int, float, int, float, float]]:
    """(i, T, x, t_x, ν) of customers 1..n, with purchase rates scaled so that the orders
    (the first purchases and the repeat ones) come to about ``orders``."""
    rng = np.random.default_rng(seed)
    model = PLAN_BGNBD
    for _ in range(4):  # repeat purchases grow less than in proportion to the rates
        x, _ = _draw(model, _observed(min(customers, 200_000), rng), rng)
        scale = float(x.mean()) / max(orders / customers - 1, 1e-9)
        model = BgNbd(model.r, model.alpha * scale, model.a, model.b)
    T = _observed(customers, rng)
    x, t_x = _draw(model, T, rng)
    nu = rng.gamma(PLAN_VALUE.q, 1 / PLAN_VALUE.v, customers)
    return list(
        zip(
            range(1, customers + 1),
            T.tolist(),
            x.astype(np.int64).tolist(),
            t_x.tolist(),
            nu.tolist(),
            strict=True,
        )
    )


def _limits() -> DatabaseLimits:
    """No statement timeout: a fit or a run over 10M orders on a loaded machine may take
    longer than the service's default bound, and that is what is measured."""
    return DatabaseLimits(batch_statement_timeout=0, idle_in_transaction_timeout=0)


async def _admin(server: URL, statement: str) -> None:
    engine = create_engine(server.set(database="postgres"), pool_size=1)
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(statement))
    await engine.dispose()


async def _generate(engine: AsyncEngine, customers: int, orders: int) -> None:
    clock = _Clock()
    rows = plan(customers, orders)
    print(f"plan of {customers:,} customers drawn in {clock}")
    clock = _Clock()
    async with engine.begin() as connection:
        await connection.execute(text("SET LOCAL statement_timeout = 0"))
        await connection.execute(text("SELECT setseed(0.42)"))
        await connection.execute(
            text("INSERT INTO tenants (id, name, currency) VALUES (:t, :t, 'EUR')"), {"t": TENANT}
        )
        await connection.execute(
            text(
                "INSERT INTO customers (tenant_id, external_id, registered_at) "
                "SELECT :t, 'c' || g, now() - interval '1100 days' FROM generate_series(1, :n) g"
            ),
            {"t": TENANT, "n": customers},
        )
        await connection.execute(
            text(
                "CREATE TEMP TABLE bench_plan (i bigint, big_t float8, x int, t_x float8,"
                " nu float8) ON COMMIT DROP"
            )
        )
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.copy_records_to_table("bench_plan", records=rows)
        await connection.execute(text(_ORDERS), {"t": TENANT})
    print(f"customers and orders generated in Postgres in {clock}")
    clock = _Clock()
    async with tenant_transaction(engine, TENANT, batch=True) as connection:
        await rollups.rebuild(connection, TENANT)
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE"))
    print(f"order rollups rebuilt, vacuumed and analyzed in {clock}")


async def _counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM customers WHERE tenant_id = :t),"
                    " (SELECT count(*) FROM orders WHERE tenant_id = :t)"
                ),
                {"t": TENANT},
            )
        ).one()
    return int(row[0]), int(row[1])


def _median(times: list[float]) -> str:
    return f"median {statistics.median(times):.1f} s ({', '.join(f'{t:.1f}' for t in times)})"


async def _timed(work: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def _fits(engine: AsyncEngine, repeat: int) -> None:
    """`fit_tenant` whole, committed (the last one's predictions are what the runs read), and
    its parts in a rolled-back transaction: the summary query, the fits, the write."""
    whole: list[float] = []
    read: list[float] = []
    fitting: list[float] = []
    writing: list[float] = []
    for _ in range(repeat):
        as_of = dt.datetime.now(dt.UTC)

        async def fit(at: dt.datetime = as_of) -> None:
            async with tenant_transaction(engine, TENANT, batch=True) as connection:
                model, written = await fit_tenant(connection, TENANT, at)
            print(f"  fitted model {model.version}: {written:,} customers' predictions")

        whole.append(await _timed(fit))
        async with tenant_transaction(engine, TENANT, batch=True) as connection:
            start = time.perf_counter()
            summary = await read_summary(connection, TENANT, as_of)
            read.append(time.perf_counter() - start)
            start = time.perf_counter()
            fit_b = bgnbd.fit(summary.x, summary.t_x, summary.T)
            fit_g = gamma_gamma.fit(summary.x, np.nan_to_num(summary.m))
            fitting.append(time.perf_counter() - start)
            model = Model(
                99,
                as_of,
                fit_b.model,
                fit_g.model,
                len(summary.x),
                summary.repeat_customers,
                fit_b.log_likelihood,
                fit_g.customers,
                fit_g.log_likelihood,
                DEFAULT_HORIZON_DAYS,
                Decimal(0),
                as_of,
            )
            start = time.perf_counter()
            await write_predictions(connection, TENANT, model, summary, as_of)
            writing.append(time.perf_counter() - start)
            await connection.rollback()
    print(f"fit_tenant (tierwise predict fit), whole: {_median(whole)}")
    print(f"  summary read (SQL, {len(summary.x):,} customers): {_median(read)}")
    print(f"  BG/NBD and Gamma-Gamma fits (in process): {_median(fitting)}")
    print(f"  every customer's predictions computed and written: {_median(writing)}")
    print(f"  model: {fit_b.model}, {fit_g.model}")


async def _runs(engine: AsyncEngine, repeat: int) -> None:
    for source in (PREDICTED, PLAIN):
        async with tenant_transaction(engine, TENANT) as connection:
            await schemes.publish(connection, TENANT, source)
    times: dict[str, list[float]] = {"bench_predicted": [], "bench_plain": []}
    for index in range(repeat):
        order = list(times)
        if index % 2:
            order.reverse()  # alternate which goes first: neither always gets a warm cache
        for key in order:
            async with engine.begin() as connection:
                for name in ("memberships", "transitions"):
                    await connection.execute(
                        text(f"DELETE FROM {name} WHERE tenant_id = :t AND scheme_key = :k"),
                        {"t": TENANT, "k": key},
                    )
            times[key].append(await _timed(lambda k=key: evaluation.evaluate(engine, TENANT, k)))
    predicted, plain = times["bench_predicted"], times["bench_plain"]
    print(f"full run, p_alive and clv(365 days): {_median(predicted)}")
    print(f"full run, the same on plain metrics: {_median(plain)}")
    print(f"  ratio of medians {statistics.median(predicted) / statistics.median(plain):.2f}")


async def end_to_end(
    server: URL, customers: int, orders: int, repeat: int, keep: bool, only: set[str]
) -> None:
    url = server.set(database=BENCH_DATABASE)
    engine = create_engine(url, pool_size=2, max_overflow=2, limits=_limits())
    try:
        found = await _counts(engine) if keep else None
    except Exception:  # no such database yet
        found = None
    try:
        if not found or found[0] == 0:
            await engine.dispose()
            await _admin(server, f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
            await _admin(server, f'CREATE DATABASE "{BENCH_DATABASE}"')
            engine = create_engine(url, pool_size=2, max_overflow=2, limits=_limits())
            await migrate.upgrade(engine)
            await _generate(engine, customers, orders)
        counted = await _counts(engine)
        print(f"{counted[0]:,} customers, {counted[1]:,} orders; load average {_load()}")
        if "fit" in only:
            await _fits(engine, repeat)
            print(f"load average {_load()}")
        if "runs" in only:
            await _runs(engine, repeat)
        print(f"load average {_load()}")
    finally:
        await engine.dispose()
        if not keep:
            await _admin(server, f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')


def _load() -> str:
    return " ".join(f"{n:.1f}" for n in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000, help="with --server")
    parser.add_argument("--database-url", help="also write the predictions (rolled back)")
    parser.add_argument("--server", help="end to end in a database of its own on this server")
    parser.add_argument("--repeat", type=int, default=3, help="with --server")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    parser.add_argument("--only", default="fit,runs", help="with --server: fit, runs or both")
    arguments = parser.parse_args()
    if arguments.server:
        asyncio.run(
            end_to_end(
                async_url(arguments.server),
                arguments.customers,
                arguments.orders,
                arguments.repeat,
                arguments.keep,
                set(arguments.only.split(",")),
            )
        )
        return

    clock = _Clock()
    summary = simulate(arguments.customers)
    print(
        f"{arguments.customers:,} customers simulated in {clock}; "
        f"{summary.repeat_customers:,} with repeat purchases"
    )

    groups = len(compress(summary.x, summary.t_x, summary.T).rows)
    clock = _Clock()
    fit = bgnbd.fit(summary.x, summary.t_x, summary.T)
    print(f"BG/NBD fit: {clock} ({groups:,} distinct (x, t_x, T), {fit.iterations} iterations)")
    print(f"  true   {TRUE_BGNBD}\n  fitted {fit.model}")
    clock = _Clock()
    money = gamma_gamma.fit(summary.x, np.nan_to_num(summary.m))
    print(
        f"Gamma-Gamma fit: {clock} ({money.customers:,} customers, {money.iterations} iterations)"
    )
    print(f"  true   {TRUE_GAMMA_GAMMA}\n  fitted {money.model}")

    model = Model(
        1,
        AS_OF,
        fit.model,
        money.model,
        arguments.customers,
        summary.repeat_customers,
        fit.log_likelihood,
        money.customers,
        money.log_likelihood,
        DEFAULT_HORIZON_DAYS,
        Decimal("0.1"),
        AS_OF,
    )
    clock = _Clock()
    predict(model, summary)
    print(f"predictions in numpy ({len(DEFAULT_HORIZON_DAYS)} horizons, CLV discounted): {clock}")
    if arguments.database_url:
        asyncio.run(database_part(arguments.database_url, summary, model))


if __name__ == "__main__":
    main()
