"""The issue's fairness criterion, on a real `tierwise serve` (one worker, as deployed): the
probe's heavy operations in one tenant held every pooled connection and filled the event
loop, and another tenant's `customer(id:)` waited 17.5 s.

Here tenant A's clients send the heaviest operation the cost limit lets through, over and
over, while tenant B's customer card is asked for one request at a time. What bounds B's wait
is a mechanism, not the machine's speed: A's operations run within A's cost budget (one of
the heaviest at a time per process), the others wait in A's queue holding no connection and
no CPU, and B's card never waits in it. The test asserts that: A's operations all answer (they
take turns, none is refused or fails), the server counts A's waits and none while B was
alone, and B's card at its 99th percentile answers faster than A's operation at its median
(B does not queue behind A). The 200 ms p99 itself is a timing of this shared machine, so it
is measured by benchmarks/bench_fairness.py, not asserted here (docs/benchmarks.md)."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.tables import tenants
from tests.api.fairness import (
    budget_waits,
    card_latencies,
    heaviest_allowed,
    heavy_load,
    quantile,
    summary,
)
from tests.api.support import shop
from tests.support import order, serve_process

CUSTOMERS = 300


async def _busy_tenant(engine: AsyncEngine, tenant: str) -> None:
    """The shop and 300 more customers with three orders each: `percentile(monetary)` ranks
    them all for every alias of A's operation."""
    await shop(engine, tenant)
    people = [{"customer_id": f"c{n:04}"} for n in range(CUSTOMERS)]
    await import_rows(engine, Kind.customers, tenant, enumerate(people), source="test")
    orders = [
        order(f"o{n:04}-{k}", f"c{n:04}", 10 + 30 * k, str(10 + (n * 37 + k * 11) % 900))
        for n in range(CUSTOMERS)
        for k in range(3)
    ]
    await import_rows(engine, Kind.orders, tenant, enumerate(orders), source="test")


async def test_one_tenants_heaviest_operations_take_turns_while_anothers_card_answers(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    busy = tenant
    quiet = f"t_{secrets.token_hex(6)}"
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=quiet, name=quiet))
    await _busy_tenant(engine, busy)
    await shop(engine, quiet)
    heavy, cost = heaviest_allowed(Settings())
    assert cost > Settings().tenant_cost_budget // 2  # two of A's do not fit at once
    with serve_process(engine.url, quiet, tmp_path / "serve.log", rate_limit_per_minute="0") as (
        _,
        base,
    ):
        card_latencies(base, quiet, 10)  # warm: documents cached, connections open
        alone = card_latencies(base, quiet, 40)
        assert budget_waits(base) == {}, "B's cards, one at a time, never wait"
        with heavy_load(base, busy, heavy, 6, tmp_path) as load:
            shared = card_latencies(base, quiet, 60)
        waits = budget_waits(base)
    print(f"\nB alone: {summary(alone)}\nB beside A: {summary(shared)}")
    print(f"A (cost {cost:,}, 6 clients): {load['answers']}, {summary(load['seconds'])}")
    # A's take turns: none is refused or fails; on a machine slow enough for one to wait out
    # the statement timeout in A's queue, that one answers TIMEOUT (the bound, as designed).
    answers = load["answers"]
    assert set(answers) <= {"ok", "TIMEOUT"} and answers.get("ok", 0) >= 1, answers
    assert waits.get("ran", 0) >= 1 and waits.get("timed_out", 0) == answers.get("TIMEOUT", 0)
    assert quantile(shared, 99) < quantile(load["seconds"], 50)
