"""What the fairness test and benchmarks/bench_fairness.py share: tenant A's heaviest allowed
operation, A's clients in a process of their own, tenant B's customer card timed, and what a
`tierwise serve` reports of its tenants' budgets."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from graphql import parse

from service.api.cost import operation_cost
from service.api.schema import build_schema
from service.config import Settings

CARD = (Path(__file__).parents[2] / "graphql/operations/customer_card.graphql").read_text()
BLOCK = (
    'c{n}: customers(where: "percentile(monetary) > {n}", first: 50) '
    "{{ totalCount edges {{ node {{ id tiers {{ tier }} metrics {{ monetary }} }} }} }}"
)

# A's clients, in a process of their own (parsing A's answers in the timing process would
# slow B's timing): each sends the heavy operation until the stop file appears, then prints
# the answers' codes and each request's seconds.
LOAD = """
import asyncio, collections, json, os, sys, time
import httpx

base, tenant, query, clients, stop = sys.argv[1:6]
counts = collections.Counter()
seconds = []

async def client(http):
    while not os.path.exists(stop):
        started = time.perf_counter()
        response = await http.post(
            "/graphql", json={"query": query}, headers={"X-Tierwise-Tenant": tenant}
        )
        seconds.append(time.perf_counter() - started)
        body = response.json()
        errors = body.get("errors") or [{}]
        code = (errors[0].get("extensions") or {}).get("code") or errors[0].get("message")
        counts["ok" if "errors" not in body else str(code)] += 1

async def main():
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        print("started", flush=True)
        await asyncio.gather(*(client(http) for _ in range(int(clients))))
    print(json.dumps({"answers": counts, "seconds": seconds}), flush=True)

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


def card_latencies(base: str, tenant: str, cards: int, customer: str = "ann") -> list[float]:
    """Seconds of each of ``cards`` customer cards asked one after the other; each answer is
    checked."""
    body = {"query": CARD, "variables": {"id": customer, "scheme": "value"}}
    timings = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for _ in range(cards):
            started = time.perf_counter()
            response = client.post("/graphql", json=body, headers={"X-Tierwise-Tenant": tenant})
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert "errors" not in answer and answer["data"]["customer"]["id"] == customer, answer
    return timings


@contextmanager
def heavy_load(base: str, tenant: str, query: str, clients: int, folder: Path) -> Iterator[dict]:
    """``clients`` clients of ``tenant`` sending ``query`` over and over while the block runs;
    afterwards the dict holds their ``answers`` (codes counted) and ``seconds``."""
    stop = folder / "stop"
    stop.unlink(missing_ok=True)
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD, base, tenant, query, str(clients), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    outcome: dict = {}
    try:
        assert load.stdout is not None and load.stdout.readline().strip() == "started"
        time.sleep(2)  # A's clients all have requests in flight
        yield outcome
    finally:
        stop.touch()
        out, _ = load.communicate(timeout=300)
    outcome.update(json.loads(out))


def budget_waits(base: str) -> dict[str, float]:
    """The server's count of operations that waited for their tenant's budget, by outcome."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = re.findall(
        r'^tierwise_tenant_budget_wait_seconds_count\{outcome="(\w+)"\} (\S+)$', text, re.M
    )
    return {outcome: float(count) for outcome, count in found}


def quantile(timings: list[float], q: int) -> float:
    """The ``q``-th percentile, in seconds."""
    return statistics.quantiles(timings, n=100, method="inclusive")[q - 1]


def summary(timings: list[float]) -> str:
    return ", ".join(f"p{q} {quantile(timings, q) * 1000:.1f} ms" for q in (50, 90, 99))
