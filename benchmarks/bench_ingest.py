"""Import N orders from CSV into Postgres and report rows per second.

    python benchmarks/bench_ingest.py --orders 1000000 [--repeat 3]

Uses TIERWISE_DATABASE_URL, or the embedded Postgres. Each repeat imports the same file into
a fresh tenant (a cold import: customers created, rollups built), then once more into the same
tenant (a re-import: nothing changes). Prints the median of each.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from service.config import load_settings
from service.data import demo_data
from service.data.ingest import import_file
from service.data.records import Kind
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


async def bench(path: Path, rows: int, repeat: int) -> None:
    with database_url(load_settings()) as url:
        engine = create_engine(url)
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(repeat):
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
            async with engine.begin() as connection:
                for table in (
                    "customer_metrics",
                    "orders",
                    "customers",
                    "exchange_rates",
                    "tenants",
                ):
                    column = "id" if table == "tenants" else "tenant_id"
                    await connection.execute(
                        text(f"DELETE FROM {table} WHERE {column} = :t"), {"t": tenant}
                    )
        await engine.dispose()
    for label, times in (("import", cold), ("re-import", warm)):
        median = statistics.median(times)
        print(
            f"{label:>9}: {rows} orders, median {median:.2f} s of {len(times)} "
            f"({rows / median:,.0f} orders/s); runs: {', '.join(f'{t:.2f}' for t in times)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file", type=Path, help="Reuse this orders CSV instead of generating.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.file or make_orders(args.orders, Path(folder))
        asyncio.run(bench(path, args.orders, args.repeat))


if __name__ == "__main__":
    main()
