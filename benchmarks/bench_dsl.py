"""Parse + check + compile of a 100-tier scheme; prints the median CPU time in ms.

CPU time of this process (not wall time), so other load on the machine blurs it less; the steps
are timed in turn within each round, so a noisy stretch weighs on all of them alike.
Run: python benchmarks/bench_dsl.py [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable

from sqlalchemy import BigInteger, Column, MetaData, Table, Text
from sqlalchemy.dialects import postgresql

from dsl.checker import check
from dsl.compiler import Sources, compile_scheme
from dsl.parser import parse_rules
from service.db.tables import customers, events, orders

memberships = Table(
    "memberships",
    MetaData(),
    Column("customer_id", BigInteger),
    Column("scheme", Text),
    Column("tier", Text),
)
SOURCES = Sources(customers, orders, events, memberships)
AS_OF = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
RUNS = 200

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


def _cpu_ms(step: Callable[[], object]) -> float:
    start = time.process_time()
    step()
    return (time.process_time() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"rounds (default {RUNS})")
    runs = parser.parse_args().runs
    text = scheme_text()
    schemes = parse_rules(text)  # also builds the parser, once, as a running service has
    scheme = check(schemes).schemes[0]
    statement = compile_scheme(scheme, SOURCES, AS_OF)

    steps: dict[str, Callable[[], object]] = {
        "total": lambda: compile_scheme(check(parse_rules(text)).schemes[0], SOURCES, AS_OF),
        "parse": lambda: parse_rules(text),
        "check": lambda: check(schemes),
        "compile": lambda: compile_scheme(scheme, SOURCES, AS_OF),
    }
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            timings[name].append(_cpu_ms(step))
    ms = {name: statistics.median(values) for name, values in timings.items()}
    # Apart, afterwards: not part of the target, and its garbage would weigh on the others.
    render = [
        _cpu_ms(lambda: str(statement.compile(dialect=postgresql.dialect()))) for _ in range(runs)
    ]
    ms["render"] = statistics.median(render)
    print(f"100-tier scheme ({len(text):,} chars), median CPU time of {runs} runs:")
    print(f"  parse + check + compile  {ms['total']:6.1f} ms")
    parts = (f"{name} {ms[name]:.1f} ms" for name in ("parse", "check", "compile"))
    print(f"    {', '.join(parts)}")
    print(f"  rendering the SQL text   {ms['render']:6.1f} ms (cached by SQLAlchemy when executed)")


if __name__ == "__main__":
    main()
