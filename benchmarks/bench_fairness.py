"""The issue's acceptance measurement: while one tenant runs the heaviest allowed operation,
another tenant's customer card should answer in under 200 ms at p99.

A `tierwise serve` process (one worker, as deployed) on a database you name (migrated here).
Tenant A (``--customers`` demo customers, the templates evaluated) runs the heaviest operation
the cost limit lets through (aliased pages of customers under ranked `where` filters, with
`totalCount`) from ``--clients`` concurrent clients in a process of their own; tenant B's
customer card (graphql/operations/customer_card.graphql) is asked for ``--cards`` times, one
request at a time, first with A idle (the baseline: on a shared machine the noise floor),
then with A busy. Prints both latency distributions and A's, for each tenant cost budget of
``--budgets`` (a server each, one after the other, ``--repeat`` rounds).

A timed measurement, so a benchmark; tests/api/test_fairness.py runs the same on a real server
and asserts the mechanism (A's operations take turns in A's budget, B's card does not queue
behind them) rather than this machine's milliseconds.

    PYTHONPATH=. python benchmarks/bench_fairness.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/tw_fair --budgets 2000 4000 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
from pathlib import Path

from service.config import Settings
from service.db import migrate
from service.db.database import async_url, create_engine
from service.db.tables import tenants
from tests.api.fairness import card_latencies, heaviest_allowed, heavy_load, summary
from tests.api.support import shop
from tests.console.support import load_demo
from tests.support import serve_process


async def prepare(url: str, customers: int) -> tuple[str, str]:
    engine = create_engine(async_url(url))
    try:
        await migrate.upgrade(engine)
        quiet, busy = f"b_{secrets.token_hex(4)}", f"a_{secrets.token_hex(4)}"
        async with engine.begin() as connection:
            await connection.execute(tenants.insert().values(id=quiet, name=quiet))
        await shop(engine, quiet)
    finally:
        await engine.dispose()
    await load_demo(async_url(url), busy, customers)
    return quiet, busy


def measure(url: str, quiet: str, busy: str, budget: int, options: argparse.Namespace) -> str:
    heavy, cost = heaviest_allowed(Settings())
    with (
        tempfile.TemporaryDirectory() as folder,
        serve_process(
            async_url(url),
            quiet,
            Path(folder) / "serve.log",
            rate_limit_per_minute="0",
            tenant_cost_budget=str(budget),
        ) as (_, base),
    ):
        card_latencies(base, quiet, 50)  # warm: documents cached, connections open
        idle = card_latencies(base, quiet, options.cards)
        with heavy_load(base, busy, heavy, options.clients, Path(folder)) as load:
            shared = card_latencies(base, quiet, options.cards)
    return (
        f"budget {budget:,}: A's operation (cost {cost:,}, {options.clients} clients): "
        f"{dict(load['answers'])}, {summary(load['seconds'])}\n"
        f"  B's card, A idle: {summary(idle)}\n"
        f"  B's card, A busy: {summary(shared)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--cards", type=int, default=300)
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[Settings().tenant_cost_budget],
        help="TIERWISE_TENANT_COST_BUDGET of each server, measured one after the other",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the budgets")
    parser.add_argument("--tenants", nargs=2, help="B and A of an earlier run: no new data")
    options = parser.parse_args()
    if options.tenants:
        quiet, busy = options.tenants
    else:
        quiet, busy = asyncio.run(prepare(options.database_url, options.customers))
    print(f"tenants: B {quiet}, A {busy}", flush=True)
    for _ in range(options.repeat):
        for budget in options.budgets:
            print(measure(options.database_url, quiet, busy, budget, options), flush=True)


if __name__ == "__main__":
    main()
