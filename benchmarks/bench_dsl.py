"""Parse + check + compile (to SQL text) of a 100-tier scheme; prints the median in ms.

Run: python benchmarks/bench_dsl.py
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

from sqlalchemy import BigInteger, Column, MetaData, Table, Text
from sqlalchemy.dialects import postgresql

from dsl.checker import check_text
from dsl.compiler import Sources, compile_scheme
from service.tables import customers, events, orders

memberships = Table(
    "memberships", MetaData(),
    Column("customer_id", BigInteger), Column("scheme", Text), Column("tier", Text),
)
CATEGORIES = ["books", "toys", "garden", "food"]


# The example conditions, cycled with varying numbers: a realistic large scheme.
TEMPLATES = [
    "monetary(365 days) > {a}000 and frequency(30 days) >= {b}",
    "monetary between {a}00 and {a}000",
    "tenure < {a} days and frequency = {b}",
    'recency > {a} days and not (region in ["north", "west"])',
    'count(event "complaint", {a} days) >= {b} or nps <= {b}',
]


def scheme_text(tiers: int = 100) -> str:
    lines = ['scheme bench "Benchmark" {']
    for i in range(tiers):
        condition = TEMPLATES[i % len(TEMPLATES)].format(a=i + 1, b=i % 7)
        lines.append(f"  tier T{i} when {condition}")
    lines += ["  tier Rest otherwise", "}"]
    return "\n".join(lines) + "\n"


def once(text: str) -> tuple[float, float]:
    """Milliseconds for parse+check+compile to a Select, and then for rendering its SQL."""
    start = time.perf_counter()
    scheme = check_text(text).schemes[0]
    sources = Sources(customers, orders, events, memberships)
    statement = compile_scheme(scheme, sources, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    compiled = time.perf_counter()
    str(statement.compile(dialect=postgresql.dialect()))
    return (compiled - start) * 1000, (time.perf_counter() - compiled) * 1000


def main() -> None:
    text = scheme_text()
    once(text)  # builds the parser once, as a running service has
    timings = [once(text) for _ in range(100)]
    print(f"100-tier scheme ({len(text):,} chars), median of {len(timings)} runs: "
          f"parse+check+compile {statistics.median(t[0] for t in timings):.1f} ms; "
          f"rendering the SQL text {statistics.median(t[1] for t in timings):.1f} ms")


if __name__ == "__main__":
    main()
