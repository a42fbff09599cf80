"""Fit time of BG/NBD and Gamma-Gamma on a synthetic summary drawn from the models themselves,
and the cost of writing every customer's predictions: numpy + COPY (what Tierwise does) against
computing the conditional expectation inside Postgres with a PL/pgSQL hypergeometric series.

Customers first buy on a day spread evenly over the year before the evaluation time and then
behave as BG/NBD and Gamma-Gamma say, with the parameters fitted on CDNOW (in days); times are
whole days, as the summary in SQL gives them.

Run: python benchmarks/bench_predictions.py [--customers N] [--database-url URL]
(with a database: the write and the PL/pgSQL comparison, in a rolled-back transaction)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from decimal import Decimal

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db.database import async_url, create_engine, enter_tenant
from service.engine.predictions import bgnbd, gamma_gamma
from service.engine.predictions.bgnbd import BgNbd
from service.engine.predictions.gamma_gamma import GammaGamma
from service.engine.predictions.mle import compress
from service.engine.predictions.tenant import (
    DEFAULT_HORIZON_DAYS,
    Model,
    Summary,
    predict,
    write_predictions,
)

TRUE_BGNBD = BgNbd(0.2417, 30.757, 0.8145, 2.4772)
TRUE_GAMMA_GAMMA = GammaGamma(6.2496, 3.7442, 15.4435)
AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def simulate(customers: int, seed: int = 7) -> Summary:
    """Summaries of ``customers`` drawn from BG/NBD (purchases) and Gamma-Gamma (values)."""
    rng = np.random.default_rng(seed)
    m = TRUE_BGNBD
    T = rng.integers(0, 365, customers).astype(np.float64)
    rate = rng.gamma(m.r, 1 / m.alpha, customers)
    dropout = rng.beta(m.a, m.b, customers)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="also write the predictions (rolled back)")
    arguments = parser.parse_args()

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
