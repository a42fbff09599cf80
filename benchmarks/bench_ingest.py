"""Import N orders from CSV into Postgres and report rows per second, and the ratio to a bare
COPY of the same file.

    python benchmarks/bench_ingest.py --orders 1000000 [--repeat 3]

With ``--statements``, one import into a fresh tenant and one re-import instead, each with the
time of every statement that took over 50 ms (and of the gaps between statements, where the
COPY of the raw file shows), to see where an import's time goes.

Uses TIERWISE_DATABASE_URL, or the embedded Postgres. Each repeat imports the same file into
a fresh tenant (a cold import: customers created, rollups built), then once more into the same
tenant (a re-import: nothing changes), and COPYs the same file, bare, into a new table shaped
like `orders` (its columns, types, checks, primary key and index; the customer as the file names
it, no foreign keys, no rollups): the physical limit of "get these rows in". Which goes first
alternates between repeats. Prints the median of each and the ratios COPY time / import time
(the import's speed as a share of COPY's; the target is at least 0.5), paired per repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import load_settings
from service.data import demo_data
from service.data.ingest import import_file
from service.data.records import FIELDS, Kind
from service.db.database import create_engine, database_url


def make_orders(rows: int, folder: Path) -> Path:
    """The demo generator's orders, cut to exactly ``rows`` rows."""
    config = demo_data.DemoConfig(customers=max(rows // 9, 1), seed=7)
    path = folder / "orders.csv"

    def first_rows() -> object:
        for index, row in enumerate(demo_data.order_rows(config)):
            if index == rows:
                return
            yield row

    written = demo_data.write_csv(first_rows(), path, demo_data.ORDER_FIELDS)  # type: ignore[arg-type]
    if written < rows:
        raise SystemExit(f"generator gave only {written} orders")
    return path


async def bare_copy(engine: AsyncEngine, path: Path) -> float:
    """Seconds to COPY the file into a new table shaped like `orders`, committed; the table is
    dropped afterwards."""
    name = f"bench_copy_{secrets.token_hex(4)}"
    with path.open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    stage = {field.name: field.stage_column for field in FIELDS[Kind.orders]}
    columns = [
        "customer_id" if stage[field] == "customer_external_id" else stage[field]
        for field in header
    ]
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE TABLE {name} (LIKE orders INCLUDING ALL)"))
        await connection.execute(
            text(
                f"ALTER TABLE {name} ALTER tenant_id SET DEFAULT 'bench', "
                "ALTER customer_id TYPE text"  # the customer's id as the file has it
            )
        )
    try:
        start = time.perf_counter()
        async with engine.begin() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.copy_to_table(
                name, source=path, columns=columns, format="csv", header=True
            )
        return time.perf_counter() - start
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE {name}"))


async def statements(path: Path) -> None:
    """One import into a new tenant and one re-import, each statement over 50 ms timed."""
    timed: list[tuple[float, float, str]] = []  # (end, seconds, statement)

    def before(connection: Connection, *_: object) -> None:
        connection.info["started"] = time.perf_counter()

    def after(connection: Connection, _cursor: object, statement: str, *_: object) -> None:
        end = time.perf_counter()
        timed.append((end, end - connection.info.pop("started"), " ".join(statement.split())))

    with database_url(load_settings()) as url:
        engine = create_engine(url)
        tenant = f"bench_{secrets.token_hex(4)}"
        await demo_data.set_up_tenant(engine, tenant, demo_data.DemoConfig(customers=1, seed=7))
        event.listen(engine.sync_engine, "before_cursor_execute", before)
        event.listen(engine.sync_engine, "after_cursor_execute", after)
        for label in ("import into a new tenant", "re-import"):
            timed.clear()
            start = time.perf_counter()
            result = await import_file(engine, Kind.orders, tenant, path)
            total = time.perf_counter() - start
            print(f"{label}: {total:.2f} s, {result.summary()}")
            previous = start
            for end, seconds, statement in timed:
                gap = end - seconds - previous
                if seconds > 0.05 or gap > 0.05:
                    print(f"  {gap:6.2f} s before, {seconds:6.2f} s  {statement[:100]}")
                previous = end
        await drop_tenant(engine, tenant)
        await engine.dispose()


async def drop_tenant(engine: AsyncEngine, tenant: str) -> None:
    async with engine.begin() as connection:
        for table in ("customer_metrics", "orders", "customers", "exchange_rates", "tenants"):
            column = "id" if table == "tenants" else "tenant_id"
            await connection.execute(
                text(f"DELETE FROM {table} WHERE {column} = :t"), {"t": tenant}
            )


async def bench(path: Path, rows: int, repeat: int) -> None:
    with database_url(load_settings()) as url:
        engine = create_engine(url)
        cold: list[float] = []
        warm: list[float] = []
        copies: list[float] = []
        for index in range(repeat):
            if index % 2 == 0:  # alternate which goes first: neither always gets a warm cache
                copies.append(await bare_copy(engine, path))
            tenant = f"bench_{secrets.token_hex(4)}"
            # The generator's rates (of seed 7, as make_orders), for its orders in dollars.
            rates = demo_data.DemoConfig(customers=1, seed=7)
            await demo_data.set_up_tenant(engine, tenant, rates)
            start = time.perf_counter()
            await import_file(engine, Kind.orders, tenant, path)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            await import_file(engine, Kind.orders, tenant, path)
            warm.append(time.perf_counter() - start)
            if index % 2 == 1:
                copies.append(await bare_copy(engine, path))
            await drop_tenant(engine, tenant)
        await engine.dispose()
    for label, times in (("bare COPY", copies), ("import", cold), ("re-import", warm)):
        median = statistics.median(times)
        print(
            f"{label:>9}: {rows} orders, median {median:.2f} s of {len(times)} "
            f"({rows / median:,.0f} orders/s); runs: {', '.join(f'{t:.2f}' for t in times)}"
        )
    for label, times in (("import", cold), ("re-import", warm)):
        paired = [c / t for c, t in zip(copies, times, strict=True)]
        ratio = statistics.median(copies) / statistics.median(times)
        print(
            f"{label:>9} / bare COPY speed: {ratio:.2f}"
            f" (ratio of medians; paired: {', '.join(f'{r:.2f}' for r in paired)}; target 0.5)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file", type=Path, help="Reuse this orders CSV instead of generating.")
    parser.add_argument(
        "--statements", action="store_true", help="Time each statement of one import instead."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.file or make_orders(args.orders, Path(folder))
        if args.statements:
            asyncio.run(statements(path))
        else:
            asyncio.run(bench(path, args.orders, args.repeat))


if __name__ == "__main__":
    main()
