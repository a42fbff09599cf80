"""The issue's acceptance measurement: while one tenant runs the heaviest allowed operation,
another tenant's customer card should answer in under 200 ms at p99.

A `tierwise serve` process (one worker, as deployed) on a database you name (migrated here).
Tenant A (``--customers`` demo customers, four schemes evaluated) runs the heaviest operation
the cost limit lets through (aliased pages of customers under ranked `where` filters, with
`totalCount`) from ``--clients`` concurrent clients in a process of their own; tenant B's
customer card (graphql/operations/customer_card.graphql) is asked for ``--cards`` times, one
request at a time, first with A idle (the baseline: on a shared machine the noise floor),
then with A busy. Prints both latency distributions.

A timed measurement, so a benchmark and not a test (the tests assert the mechanisms: the
connection shares, the cost limit and budget, cancellation, without timing them).

    python benchmarks/bench_fairness.py --database-url postgresql://postgres@127.0.0.1:5432/tw_fair
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from graphql import parse

from service.api.cost import operation_cost
from service.api.schema import build_schema
from service.config import Settings
from service.db import migrate
from service.db.database import async_url, create_engine
from service.db.tables import tenants
from tests.api.support import shop
from tests.console.support import load_demo
from tests.support import serve_process

CARD = (Path(__file__).parents[1] / "graphql/operations/customer_card.graphql").read_text()
BLOCK = (
    'c{n}: customers(where: "percentile(monetary) > {n}", first: 50) '
    "{{ totalCount edges {{ node {{ id tiers {{ tier }} metrics {{ monetary }} }} }} }}"
)

# A's clients, in a process of their own (parsing A's answers in the timing process would
# slow B's timing): each sends the heavy operation until the stop file appears.
LOAD = """
import asyncio, collections, json, os, sys
import httpx

base, tenant, query, clients, stop = sys.argv[1:6]
counts = collections.Counter()

async def client(http):
    while not os.path.exists(stop):
        response = await http.post(
            "/graphql", json={"query": query}, headers={"X-Tierwise-Tenant": tenant}
        )
        body = response.json()
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
        counts[codes[0] if codes else "ok"] += 1

async def main():
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        print("started", flush=True)
        await asyncio.gather(*(client(http) for _ in range(int(clients))))
    print(json.dumps(counts), flush=True)

asyncio.run(main())
"""


def heaviest_allowed(settings: Settings) -> tuple[str, int]:
    """As many aliased blocks as the cost limit lets through, and their cost."""
    schema = build_schema(settings)._schema
    best = ("", 0)
    for count in range(1, 20):
        query = "{ " + " ".join(BLOCK.format(n=50 + n) for n in range(count)) + " }"
        cost = operation_cost(schema, parse(query), settings)
        if cost > settings.max_query_cost:
            break
        best = (query, cost)
    return best


def card_latencies(base: str, tenant: str, cards: int) -> list[float]:
    body = {"query": CARD, "variables": {"id": "ann", "scheme": "value"}}
    timings = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for _ in range(cards):
            started = time.perf_counter()
            response = client.post("/graphql", json=body, headers={"X-Tierwise-Tenant": tenant})
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200 and "errors" not in response.json(), response.text
    return timings


def summary(timings: list[float]) -> str:
    q = statistics.quantiles(timings, n=100, method="inclusive")
    return f"p50 {q[49] * 1000:.1f} ms, p90 {q[89] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--cards", type=int, default=300)
    options = parser.parse_args()
    quiet, busy = asyncio.run(prepare(options.database_url, options.customers))
    heavy, cost = heaviest_allowed(Settings())
    with (
        tempfile.TemporaryDirectory() as folder,
        serve_process(
            async_url(options.database_url),
            quiet,
            Path(folder) / "serve.log",
            rate_limit_per_minute="0",
        ) as (_, base),
    ):
        card_latencies(base, quiet, 50)  # warm: documents cached, connections open
        idle = card_latencies(base, quiet, options.cards)
        stop = Path(folder) / "stop"
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, base, busy, heavy, str(options.clients), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert load.stdout is not None and load.stdout.readline().strip() == "started"
            time.sleep(2)  # A's clients all have requests in flight
            busy_timings = card_latencies(base, quiet, options.cards)
        finally:
            stop.touch()
            out, _ = load.communicate(timeout=300)
    print(f"A's operation: cost {cost:,}, {options.clients} clients, answers {out.strip()}")
    print(f"B's card, A idle: {summary(idle)}")
    print(f"B's card, A busy: {summary(busy_timings)}")


if __name__ == "__main__":
    main()
