"""The bulk path (CSV cast inside Postgres) stores exactly what the Python parser would, or
defers to it: a CSV import and a row-by-row import of the same rows end the same."""

from __future__ import annotations

import asyncio
import csv
import re
import secrets
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import URL

from service.data.ingest import import_file, import_rows
from service.data.readers import IngestError
from service.data.records import Kind
from service.db.database import create_engine
from service.db.tables import customers, orders

digits = st.text("0123456789", min_size=1, max_size=3)
iso_timestamps = st.builds(
    "2026-{:02d}-{:02d}{}{}".format,
    st.integers(1, 12),
    st.integers(1, 28),
    st.sampled_from(
        ["", "T10:00", " 23:59:59", "T10:00:00.5", "T00:00:00.123456", "T23:59:59", "T00:00:00"]
    ),
    st.sampled_from(["", "Z", "+08", "+0800", "-05:30"]),
).map(lambda s: s if s[10:] else s[:10])
odd_timestamps = st.one_of(
    st.builds(
        "{}-{}-{}{}{}".format,
        st.sampled_from(["2026", "1999", "202", "20260"]),
        st.sampled_from(["01", "12", "13", "1", "00"]),
        st.sampled_from(["05", "31", "30", "5", "00"]),
        st.sampled_from(
            ["", "T10:00", "T24:00:00", "T10:00:60", "T10:00:00.1234567", "t10:00", "T10"]
        ),
        st.sampled_from(["", "Z", "+08", " PST", "z", "+8"]),
    ),
    st.sampled_from(["yesterday", "now", "epoch", "05/01/2026", "Jan 5 2026", "", " 2026-01-05 "]),
    # The layout checked by its round trip (records.TIMESTAMP), with values it must refuse.
    st.builds(
        "{}-{}-{}T{}:{}:{}Z".format,
        st.sampled_from(["2026", "0000", "0001", "9999", "20x6"]),
        st.sampled_from(["02", "13", "1a"]),
        st.sampled_from(["28", "29", "30"]),
        st.sampled_from(["00", "23", "24", " 1"]),
        st.sampled_from(["00", "59", "60"]),
        st.sampled_from(["00", "59", "60", "5 "]),
    ),
)
# Mostly values the bulk path takes, so both the bulk path and the fallback get exercised.
timestamps = st.one_of(iso_timestamps, iso_timestamps, iso_timestamps, odd_timestamps)
plain_amounts = st.decimals(-(10**6), 10**6, places=2).map(str)
amounts = st.one_of(
    plain_amounts,
    plain_amounts,
    st.builds("{}{}.{}".format, st.sampled_from(["", "-", "+"]), digits, digits),
    st.sampled_from(["NaN", "Infinity", "1e3", "0x1A", "1_000", "1.23456", "1,5", " 7 ", "."]),
)
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=6)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "order_id": st.sampled_from(["o1", "o2", "o3", " o1", "o4", ""]),
            "customer_id": st.sampled_from(["c1", "c2", " c1 "]),
            "ordered_at": timestamps,
            "amount": amounts,
            "category": texts,
        }
    ),
    min_size=1,
    max_size=5,
)


async def _outcome(engine: Any, tenant: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as connection:
        stored = await connection.execute(
            select(
                orders.c.external_id,
                customers.c.external_id,
                orders.c.ordered_at,
                orders.c.amount,
                orders.c.category,
            )
            .join(
                customers,
                (customers.c.tenant_id == orders.c.tenant_id)
                & (customers.c.id == orders.c.customer_id),
            )
            .where(orders.c.tenant_id == tenant)
            .order_by(orders.c.external_id)
        )
        return [tuple(row) for row in stored]


def _without_lines(message: str | None) -> str | None:
    return re.sub(r"FILE:\d+:", "FILE:N:", message) if message else None


async def _both_ways(database: URL, folder: Path, batch: list[dict[str, str]]) -> None:
    path = folder / f"{secrets.token_hex(4)}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(batch[0]))
        writer.writeheader()
        writer.writerows(batch)
    engine = create_engine(database, pool_size=1, max_overflow=1)
    bulk, by_row = f"b_{secrets.token_hex(4)}", f"p_{secrets.token_hex(4)}"
    try:
        try:
            await import_file(engine, Kind.orders, bulk, path)
            bulk_failed = None
        except IngestError as error:
            bulk_failed = str(error).replace(str(path), "FILE")
        try:
            await import_rows(engine, Kind.orders, by_row, enumerate(batch, 2), source="FILE")
            row_failed = None
        except IngestError as error:
            row_failed = str(error)
        # A value with a newline spans two lines of the file, so only the lines may differ.
        assert _without_lines(bulk_failed) == _without_lines(row_failed)
        assert await _outcome(engine, bulk) == await _outcome(engine, by_row)
    finally:
        await engine.dispose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=rows)
# Python's str.strip() also takes \x1c-\x1f for whitespace; Postgres' btrim does not.
@example(
    batch=[
        {
            "order_id": "o1",
            "customer_id": "c1",
            "ordered_at": "2026-01-01",
            "amount": "0",
            "category": "\x1f",
        }
    ]
)
def test_bulk_and_row_by_row_imports_agree(
    database: URL, tmp_path: Path, batch: list[dict[str, str]]
) -> None:
    asyncio.run(_both_ways(database, tmp_path, batch))
