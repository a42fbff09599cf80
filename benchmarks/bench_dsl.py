"""Parse + check + compile of a 100-tier scheme; prints the median CPU time in ms.

CPU time of this process (not wall time), so other load on the machine blurs it less.
Run: python benchmarks/bench_dsl.py
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable

from sqlalchemy import BigInteger, Column, MetaData, Table, Text
from sqlalchemy.dialects import postgresql

from dsl.checker import check
from dsl.compiler import Sources, compile_scheme
from dsl.parser import parse_rules
from service.tables import customers, events, orders

memberships = Table(
    "memberships",
    MetaData(),
    Column("customer_id", BigInteger),
    Column("scheme", Text),
    Column("tier", Text),
)
SOURCES = Sources(customers, orders, events, memberships)
AS_OF = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
RUNS = 100

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


def median_ms(step: Callable[[], object]) -> float:
    timings = []
    for _ in range(RUNS):
        start = time.process_time()
        step()
        timings.append((time.process_time() - start) * 1000)
    return statistics.median(timings)


def main() -> None:
    text = scheme_text()
    schemes = parse_rules(text)  # also builds the parser, once, as a running service has
    scheme = check(schemes).schemes[0]
    statement = compile_scheme(scheme, SOURCES, AS_OF)

    total = median_ms(lambda: compile_scheme(check(parse_rules(text)).schemes[0], SOURCES, AS_OF))
    parse = median_ms(lambda: parse_rules(text))
    checking = median_ms(lambda: check(schemes))
    compiling = median_ms(lambda: compile_scheme(scheme, SOURCES, AS_OF))
    rendering = median_ms(lambda: str(statement.compile(dialect=postgresql.dialect())))
    print(f"100-tier scheme ({len(text):,} chars), median CPU time of {RUNS} runs:")
    print(f"  parse + check + compile  {total:6.1f} ms")
    print(f"    parse {parse:.1f} ms, check {checking:.1f} ms, compile {compiling:.1f} ms")
    print(f"  rendering the SQL text   {rendering:6.1f} ms (cached by SQLAlchemy when executed)")


if __name__ == "__main__":
    main()
