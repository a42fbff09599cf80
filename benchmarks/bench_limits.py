"""What the bounds of issue 19 cost one customer card, in CPU of the API process, measured in
process (no database, no network): the work each adds to every request, timed alone.

- the cost estimate of the card's document: computed (`service.api.cost.operation_cost`, the
  first card of a document) and remembered (`CostMemo`, every card after it);
- the tenant's cost budget entered and left (`TenantBudgets.held`, per operation);
- `RequestBounds` (body bound, the request's connection share, the disconnect watcher task),
  around an ASGI app that answers at once, against that app bare.

Not timed here: a place among the tenant's connections (a semaphore, taken once per request's
shared connection), which needs a database; bench_api.py measures the whole.

The statement and idle timeouts are set in the round trip that confines the transaction to
its tenant (`SET LOCAL`), so they add no round trip. Medians of ``--repeat`` timings of
``--number`` calls each.

    PYTHONPATH=. python benchmarks/bench_limits.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from graphql import parse
from starlette.types import Message, Receive, Scope, Send

from service.api.bounds import RequestBounds
from service.api.cost import CostMemo, TenantBudgets, operation_cost
from service.api.schema import build_schema
from service.config import Settings

CARD = (Path(__file__).parents[1] / "graphql/operations/customer_card.graphql").read_text()


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _request(body: bytes) -> tuple[Scope, Receive, Send]:
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [(b"content-length", str(len(body)).encode())],
    }
    messages: list[Message] = [
        {"type": "http.request", "body": body, "more_body": False},
        {"type": "http.disconnect"},
    ]
    gone = asyncio.Event()

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    return scope, receive, send


async def timed(work: Callable[[], Awaitable[object]], number: int, repeat: int) -> float:
    """Median microseconds of one call."""
    runs = []
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(number):
            await work()
        runs.append((time.process_time() - started) / number * 1e6)
    return statistics.median(runs)


async def main(number: int, repeat: int) -> None:
    settings = Settings()
    schema = build_schema(settings)._schema
    document = parse(CARD)
    variables = {"id": "ann", "scheme": "value"}
    budgets = TenantBudgets(settings.tenant_cost_budget)
    bounded = RequestBounds(_answer, settings.max_request_bytes, settings.request_connections)
    body = b'{"query": "..."}' * 20

    memo = CostMemo(settings)

    async def cost() -> object:
        return operation_cost(schema, document, settings, variables=variables)

    async def remembered() -> object:
        return memo.cost(schema, document, None, variables)

    async def budget() -> object:
        async with budgets.held("t", 34, settings.statement_timeout):
            return None

    async def bare() -> object:
        return await _answer(*_request(body))

    async def with_bounds() -> object:
        return await bounded(*_request(body))

    results = {
        name: await timed(work, number, repeat)
        for name, work in [
            ("cost estimate of the card, computed", cost),
            ("cost estimate of the card, remembered", remembered),
            ("tenant budget held", budget),
            ("ASGI app bare", bare),
            ("ASGI app in RequestBounds", with_bounds),
        ]
    }
    for name, micros in results.items():
        print(f"| {name} | {micros:.1f} µs |")
    extra = results["ASGI app in RequestBounds"] - results["ASGI app bare"]
    print(f"RequestBounds adds {extra:.1f} µs per request")
    total = results["cost estimate of the card, remembered"] + results["tenant budget held"]
    total += extra
    print(f"per customer card in all: {total:.1f} µs of CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    asyncio.run(main(options.number, options.repeat))
