"""Parse + check + compile of a 100-tier scheme; prints the median CPU time in ms.

Two schemes: the classic one (the issue's example conditions) and one that also uses
arithmetic, windows that end in the past, definitions, the newer order metrics (every other
tier) and `keep` (every tenth tier).

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

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text
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
    Column("qualified_at", DateTime(timezone=True)),
)
SOURCES = Sources(customers, orders, events, memberships, kept=lambda scheme: memberships)
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


# The second edition's syntax, alternated with the classic conditions in the second scheme.
NEW_TEMPLATES = [
    "monetary(90 days) < 0.5 * before and frequency >= {b}",
    "aov > {a}0 and recency < {a} days",
    "(monetary(30 days) + monetary(30 days, 30 days ago)) / 2 > {a}00",
    "active and last_purchase - first_purchase > {a} days",
    'count(event "login", 30 days) < count(event "login", 30 days, 30 days ago) - {b}',
    "largest_order(365 days) > {a}0 and purchase_interval(365 days) < {a} days",
]
DEFINITIONS = [
    "  define aov = monetary(365 days) / frequency(365 days)",
    "  define before = monetary(90 days, 90 days ago)",
    "  define active = frequency(90 days) >= 1",
]


def scheme_text(tiers: int = 100, new_syntax: bool = False) -> str:
    lines = ['scheme bench "Benchmark" {', *(DEFINITIONS if new_syntax else [])]
    for i in range(tiers):
        templates = NEW_TEMPLATES if new_syntax and i % 2 else TEMPLATES
        condition = templates[(i // 2 if new_syntax else i) % len(templates)].format(
            a=i + 1, b=i % 7
        )
        keep = " keep 90 days" if new_syntax and i % 10 == 1 else ""
        lines.append(f"  tier T{i} when {condition}{keep}")
    lines += ["  tier Rest otherwise", "}"]
    return "\n".join(lines) + "\n"


def _cpu_ms(step: Callable[[], object]) -> float:
    start = time.process_time()
    step()
    return (time.process_time() - start) * 1000


def measure(text: str, runs: int) -> dict[str, float]:
    """Median CPU ms of each step over `runs` rounds, and of rendering the SQL text."""
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
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"rounds (default {RUNS})")
    runs = parser.parse_args().runs
    for title, text in (
        ("100-tier scheme", scheme_text()),
        ("100-tier scheme, half in the new syntax", scheme_text(new_syntax=True)),
    ):
        ms = measure(text, runs)
        print(f"{title} ({len(text):,} chars), median CPU time of {runs} runs:")
        print(f"  parse + check + compile  {ms['total']:6.1f} ms")
        parts = (f"{name} {ms[name]:.1f} ms" for name in ("parse", "check", "compile"))
        print(f"    {', '.join(parts)}")
        render = f"{ms['render']:6.1f} ms (cached by SQLAlchemy when executed)"
        print(f"  rendering the SQL text   {render}")


if __name__ == "__main__":
    main()
