from __future__ import annotations

import asyncio
import csv
import json
import secrets
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data import ingest, rollups
from service.data.ingest import BULK_MIN_BYTES, import_file, import_rows
from service.data.readers import IngestError
from service.data.records import Kind
from service.db.database import ANALYZE_AFTER_ROWS
from service.db.tables import customer_metrics, customers, events, orders
from tests.support import order

ORDER_HEADER = ["order_id", "customer_id", "ordered_at", "amount", "category"]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


async def snapshot(engine: AsyncEngine, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row of the tenant, to show that something changed nothing."""
    tables = {"customers": customers, "orders": orders, "events": events}
    tables["customer_metrics"] = customer_metrics
    result: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as connection:
        for name, table in tables.items():
            rows = await connection.execute(
                select(table).where(table.c.tenant_id == tenant).order_by(*table.primary_key)
            )
            result[name] = [tuple(row) for row in rows]
    return result


async def test_orders_import_creates_customers_and_rollups(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        ORDER_HEADER,
        [
            ["o1", "c1", "2026-01-05T10:00:00Z", "100.50", "books"],
            ["o2", "c1", "2026-02-01", "20", "food"],
            ["o3", "c2", "2026-03-01T08:00:00+08:00", "7.25", ""],
        ],
    )
    result = await import_file(engine, Kind.orders, tenant, path)
    assert (result.rows, result.inserted, result.customers_created) == (3, 3, 2)

    async with engine.connect() as connection:
        stored = (
            await connection.execute(
                select(
                    orders.c.external_id, orders.c.amount, orders.c.ordered_at, orders.c.category
                )
                .where(orders.c.tenant_id == tenant)
                .order_by(orders.c.external_id)
            )
        ).all()
        rollup = (
            await connection.execute(
                select(
                    customers.c.external_id,
                    customer_metrics.c.order_count,
                    customer_metrics.c.order_total,
                    customer_metrics.c.last_order_at,
                )
                .join(
                    customer_metrics,
                    (customer_metrics.c.customer_id == customers.c.id)
                    & (customer_metrics.c.tenant_id == customers.c.tenant_id),
                )
                .where(customers.c.tenant_id == tenant)
                .order_by(customers.c.external_id)
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        ("o1", Decimal("100.5000"), datetime(2026, 1, 5, 10, tzinfo=UTC), "books"),
        ("o2", Decimal("20.0000"), datetime(2026, 2, 1, tzinfo=UTC), "food"),
        (
            "o3",
            Decimal("7.2500"),
            datetime(2026, 3, 1, 8, tzinfo=timezone(timedelta(hours=8))),
            None,
        ),
    ]
    assert [tuple(row) for row in rollup] == [
        ("c1", 2, Decimal("120.5000"), datetime(2026, 2, 1, tzinfo=UTC)),
        ("c2", 1, Decimal("7.2500"), datetime(2026, 3, 1, tzinfo=UTC)),
    ]


async def test_reimporting_a_file_changes_nothing(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        ORDER_HEADER,
        [["o1", "c1", "2026-01-05", "10", "books"], ["o2", "c2", "2026-01-06", "11", "food"]],
    )
    await import_file(engine, Kind.orders, tenant, path)
    before = await snapshot(engine, tenant)
    again = await import_file(engine, Kind.orders, tenant, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    assert await snapshot(engine, tenant) == before


@pytest.mark.parametrize("first_load", [True, False], ids=["new tenant", "stored orders"])
@pytest.mark.parametrize("big", [False, True], ids=["small", "big"])
async def test_the_last_line_of_a_repeated_id_wins(
    engine: AsyncEngine, tenant: str, tmp_path: Path, first_load: bool, big: bool
) -> None:
    """A big load into a new tenant inserts the orders unsorted until an id breaks the
    primary key; into one with orders it counts the ids first; a small load sorts them.
    Either way the file's last line wins."""
    header = ["order_id", "customer_id", "ordered_at", "amount"]
    if not first_load:
        stored = write_csv(tmp_path / "a.csv", header, [["o0", "c1", "2026-01-01", "1"]])
        await import_file(engine, Kind.orders, tenant, stored)
    filler = [[f"f{n}", "c3", "2026-01-02", "1"] for n in range(ANALYZE_AFTER_ROWS if big else 0)]
    rows = [
        ["o1", "c1", "2026-01-05", "10"],
        ["o2", "c1", "2026-01-06", "11"],
        *filler,
        ["o1", "c2", "2026-01-07", "12"],
    ]
    loaded = await import_file(
        engine, Kind.orders, tenant, write_csv(tmp_path / "b.csv", header, rows)
    )
    assert loaded.bulk
    assert (loaded.inserted, loaded.updated, loaded.unchanged) == (2 + len(filler), 0, 0)
    async with engine.connect() as connection:
        stored_rows = await connection.execute(
            select(orders.c.external_id, customers.c.external_id, orders.c.amount)
            .join(
                customers,
                (customers.c.tenant_id == orders.c.tenant_id)
                & (customers.c.id == orders.c.customer_id),
            )
            .where(orders.c.tenant_id == tenant, orders.c.external_id.in_(["o1", "o2"]))
            .order_by(orders.c.external_id)
        )
        assert [tuple(row) for row in stored_rows] == [
            ("o1", "c2", Decimal(12)),
            ("o2", "c1", Decimal(11)),
        ]
        assert await rollups.drift(connection, tenant) == 0


async def test_a_big_file_with_an_order_without_a_rate_skips_it(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """The bulk path's rates of the day go with its savepoint when a row has no rate: the
    Python reader's good rows are then converted without them."""
    header = ["order_id", "customer_id", "ordered_at", "amount", "currency"]
    rows = [[f"o{n}", "c1", "2026-01-02", "1", "EUR"] for n in range(ANALYZE_AFTER_ROWS)]
    rows.append(["x1", "c2", "2026-01-03", "5", "JPY"])  # no rate to the reporting EUR
    path = write_csv(tmp_path / "orders.csv", header, rows)
    loaded = await import_file(engine, Kind.orders, tenant, path, skip_bad_to=tmp_path / "bad.csv")
    assert not loaded.bulk
    assert (loaded.inserted, loaded.rejected) == (ANALYZE_AFTER_ROWS, 1)
    assert "x1" in (tmp_path / "bad.csv").read_text(encoding="utf-8")


async def test_a_bad_row_rejects_the_whole_file_and_names_its_line(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await import_file(
        engine,
        Kind.orders,
        tenant,
        write_csv(tmp_path / "first.csv", ORDER_HEADER, [["o0", "c0", "2026-01-01", "5", ""]]),
    )
    before = await snapshot(engine, tenant)
    path = write_csv(
        tmp_path / "orders.csv",
        ORDER_HEADER,
        [
            ["o1", "c1", "2026-01-05", "10", "books"],
            ["o2", "c2", "2026-01-06", "ten", "food"],
            ["o3", "c3", "05/01/2026", "3", "food"],
            ["o4", "", "2026-01-06", "3", "food"],
        ],
    )
    with pytest.raises(IngestError) as caught:
        await import_file(engine, Kind.orders, tenant, path)
    message = str(caught.value)
    assert f"{path}: 3 bad rows, nothing imported" in message
    assert f"{path}:3: amount: 'ten' is not a number" in message
    assert f"{path}:4: ordered_at: '05/01/2026' is not an ISO 8601 date or timestamp" in message
    assert f"{path}:5: customer_id: is required but missing" in message
    assert await snapshot(engine, tenant) == before


async def test_skip_bad_imports_good_rows_and_writes_bad_ones(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        ORDER_HEADER,
        [["o1", "c1", "2026-01-05", "10", "books"], ["o2", "c2", "yesterday", "11", "food"]],
    )
    rejects = tmp_path / "rejects.csv"
    result = await import_file(engine, Kind.orders, tenant, path, skip_bad_to=rejects)
    assert (result.inserted, result.rejected) == (1, 1)
    with rejects.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert rows[0]["order_id"] == "o2" and rows[0]["line"] == "3"
    assert "ordered_at" in rows[0]["error"]
    async with engine.connect() as connection:
        ids = (
            (
                await connection.execute(
                    select(orders.c.external_id).where(orders.c.tenant_id == tenant)
                )
            )
            .scalars()
            .all()
        )
    assert ids == ["o1"]


async def test_header_errors_suggest_the_field_meant(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        ["order_id", "customer_id", "orderd_at", "amount"],
        [["o1", "c1", "2026-01-05", "10"]],
    )
    with pytest.raises(IngestError) as caught:
        await import_file(engine, Kind.orders, tenant, path)
    message = str(caught.value)
    assert f"{path}:1: orderd_at: unknown column; did you mean 'ordered_at'?" in message
    assert f"{path}:1: ordered_at: required column is missing from the header" in message


async def test_timestamps_without_offset_or_time_are_utc(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        ["order_id", "customer_id", "ordered_at", "amount"],
        [["a", "c", "2026-04-01", "1"], ["b", "c", "2026-04-01T12:30:00", "1"]],
    )
    await import_file(engine, Kind.orders, tenant, path)
    async with engine.connect() as connection:
        stamps = (
            (
                await connection.execute(
                    select(orders.c.ordered_at)
                    .where(orders.c.tenant_id == tenant)
                    .order_by(orders.c.external_id)
                )
            )
            .scalars()
            .all()
        )
    assert stamps == [datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 1, 12, 30, tzinfo=UTC)]


async def test_customers_update_only_the_columns_a_file_carries(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    full = write_csv(
        tmp_path / "customers.csv",
        ["customer_id", "age", "region", "registered_at", "attributes", "attributes.tier_hint"],
        [["c1", "41", "north", "2025-01-01", '{"plan": "gold", "seats": 3}', "x"]],
    )
    await import_file(engine, Kind.customers, tenant, full)
    partial = write_csv(
        tmp_path / "regions.csv",
        ["customer_id", "region", "attributes.plan"],
        [["c1", "east", "silver"], ["c2", "west", ""]],
    )
    result = await import_file(engine, Kind.customers, tenant, partial)
    assert (result.inserted, result.updated) == (1, 1)
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    customers.c.age,
                    customers.c.region,
                    customers.c.registered_at,
                    customers.c.attributes,
                ).where(customers.c.tenant_id == tenant, customers.c.external_id == "c1")
            )
        ).one()
    assert tuple(row) == (
        41,
        "east",
        datetime(2025, 1, 1, tzinfo=UTC),
        {"plan": "silver", "seats": 3, "tier_hint": "x"},
    )


async def test_jsonl_events_without_ids_are_stored_once(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        {"customer_id": "c1", "type": "nps", "occurred_at": "2026-05-01T09:00:00Z", "value": 9},
        {
            "customer_id": "c1",
            "type": "login",
            "occurred_at": "2026-05-02",
            "properties": {"device": "ios", "score": 0.5},
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    first = await import_file(engine, Kind.events, tenant, path)
    second = await import_file(engine, Kind.events, tenant, path)
    assert (first.inserted, first.customers_created) == (2, 1)
    assert (second.inserted, second.unchanged) == (0, 2)
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(events.c.type, events.c.value, events.c.properties)
                .where(events.c.tenant_id == tenant)
                .order_by(events.c.occurred_at)
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("nps", Decimal(9), {}),
        ("login", None, {"device": "ios", "score": 0.5}),
    ]


async def test_jsonl_errors_name_line_and_field(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text(
        '{"order_id": "o1", "customer_id": "c1", "ordered_at": "2026-01-01", "amount": 3}\n'
        "not json\n"
        '{"order_id": "o2", "customer_id": "c1", "ordered_at": "2026-01-01", "amount": true,'
        ' "colour": "red"}\n'
    )
    with pytest.raises(IngestError) as caught:
        await import_file(engine, Kind.orders, tenant, path)
    message = str(caught.value)
    assert f"{path}:2: not valid JSON" in message
    assert f"{path}:3: colour: unknown field" in message
    assert f"{path}:3: amount: True is not a number" in message


async def test_moving_an_order_updates_both_customers_rollups(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    header = ["order_id", "customer_id", "ordered_at", "amount"]
    await import_file(
        engine,
        Kind.orders,
        tenant,
        write_csv(
            tmp_path / "a.csv",
            header,
            [["o1", "c1", "2026-01-01", "5"], ["o2", "c1", "2026-01-02", "6"]],
        ),
    )
    moved = await import_file(
        engine,
        Kind.orders,
        tenant,
        write_csv(
            tmp_path / "b.csv",
            header,
            [["o2", "c2", "2026-01-02", "6"], ["o1", "c1", "2026-01-01", "5"]],
        ),
    )
    assert (moved.updated, moved.unchanged) == (1, 1)
    async with engine.connect() as connection:
        assert await rollups.drift(connection, tenant) == 0
        totals = (
            await connection.execute(
                text(
                    "SELECT c.external_id, m.order_total FROM customer_metrics m JOIN customers c"
                    " ON c.tenant_id = m.tenant_id AND c.id = m.customer_id WHERE m.tenant_id = :t"
                    " ORDER BY 1"
                ),
                {"t": tenant},
            )
        ).all()
    assert [tuple(row) for row in totals] == [("c1", Decimal(5)), ("c2", Decimal(6))]


async def test_values_are_trimmed_of_whitespace_only(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        ORDER_HEADER,
        [
            ["o1", "c1", "2026-01-05", "1", "v"],
            ["o2", "c1", "2026-01-05", "1", "\x0b tv\tf \n"],
            ["o3", "c1", "2026-01-05", "1", "\x0b \t"],
        ],
    )
    await import_file(engine, Kind.orders, tenant, path)
    async with engine.connect() as connection:
        categories = (
            await connection.execute(
                select(orders.c.category)
                .where(orders.c.tenant_id == tenant)
                .order_by(orders.c.external_id)
            )
        ).scalars()
        assert list(categories) == ["v", "tv\tf", None]


async def test_loads_of_one_tenant_queue_without_holding_the_pool(
    engine: AsyncEngine, tenant: str
) -> None:
    """Ten concurrent loads of one tenant take turns in the process, one connection at a time,
    so the rest of the pool stays free for reads; every row lands."""
    busiest = 0
    loads = [
        asyncio.create_task(
            import_rows(
                engine,
                Kind.orders,
                tenant,
                enumerate([order(f"q{n}", f"c{n % 3}", 1, "10")]),
                source="test",
            )
        )
        for n in range(10)
    ]
    while not all(load.done() for load in loads):
        busiest = max(busiest, engine.pool.checkedout())  # type: ignore[attr-defined]
        await asyncio.sleep(0)
    await asyncio.gather(*loads)
    assert busiest == 1
    async with engine.connect() as connection:
        stored = await connection.scalar(
            select(func.count()).select_from(orders).where(orders.c.tenant_id == tenant)
        )
    assert stored == 10


async def test_a_small_file_is_parsed_in_python_and_a_large_one_cast_in_sql(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the threshold in use (the other tests lower it to 0), a file of a few orders takes
    the row path and one of `BULK_MIN_BYTES` or more the COPY path; both store the same."""
    monkeypatch.setattr(ingest, "BULK_MIN_BYTES", BULK_MIN_BYTES)
    stored = {}
    for size, count in (("small", 3), ("large", 1000)):
        rows = [
            [f"o{n}", f"c{n % 7}", "2026-01-05T10:00:00Z", f"{n}.25", "books"] for n in range(count)
        ]
        path = write_csv(tmp_path / f"{size}.csv", ORDER_HEADER, rows)
        assert (path.stat().st_size >= BULK_MIN_BYTES) == (size == "large")
        tenant = f"t_{size}_{secrets.token_hex(4)}"
        result = await import_file(engine, Kind.orders, tenant, path)
        assert (result.bulk, result.inserted) == (size == "large", count)
        async with engine.connect() as connection:
            amounts = await connection.execute(
                select(orders.c.external_id, orders.c.amount)
                .where(orders.c.tenant_id == tenant, orders.c.external_id.in_(["o0", "o1", "o2"]))
                .order_by(orders.c.external_id)
            )
            stored[size] = list(amounts)
    assert (
        stored["small"]
        == stored["large"]
        == [("o0", Decimal("0.25")), ("o1", Decimal("1.25")), ("o2", Decimal("2.25"))]
    )
