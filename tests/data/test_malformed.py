"""Files as real exports come: every malformed file ends in `file:line: problem` with nothing
written, or, with skip-bad, exactly its bad rows set aside; the cases of
shared/cases (csv-blank-line, csv-extra-column, trailing-zeros, jsonl-exact-numbers,
csv-attribute-types) among them."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data import ingest
from service.data.ingest import import_file
from service.data.readers import IngestError
from service.data.records import Kind
from service.db import exact
from service.db.tables import orders
from service.engine import evaluation
from tests.data.test_ingest import snapshot
from tests.support import publish, tiers_of

HEADER = b"order_id,customer_id,ordered_at,amount\n"


async def order_ids(engine: AsyncEngine, tenant: str) -> dict[str, Decimal]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(orders.c.external_id, orders.c.amount).where(orders.c.tenant_id == tenant)
        )
        return dict(sorted((i, a) for i, a in rows))


async def refused(engine: AsyncEngine, tenant: str, path: Path) -> str:
    """The message of a refused import, having checked it changed nothing."""
    before = await snapshot(engine, tenant)
    with pytest.raises(IngestError) as caught:
        await import_file(engine, Kind.orders, tenant, path)
    assert await snapshot(engine, tenant) == before
    return str(caught.value)


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


async def test_a_blank_line_is_no_row(engine: AsyncEngine, tenant: str, tmp_path: Path) -> None:
    """Case csv-blank-line: COPY refused it with asyncpg's own error, which crashed."""
    path = write(
        tmp_path, "orders.csv", HEADER + b"B1,QB,2026-01-01,1\n\nB2,QB,2026-01-02,2\n\r\n\n"
    )
    result = await import_file(engine, Kind.orders, tenant, path)
    assert (result.rows, result.inserted, result.bulk) == (2, 2, False)
    assert await order_ids(engine, tenant) == {"B1": Decimal(1), "B2": Decimal(2)}


async def test_clean_files_stay_on_the_copy_path(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """The fallback is for files COPY refuses; a clean one (trailing zeros included) is
    COPYed and cast in SQL, the fast path."""
    path = write(
        tmp_path,
        "orders.csv",
        HEADER + b'C1,QB,2026-01-01,19.990000\nC2,"Q,B",2026-01-02T10:00:00Z,2\n',
    )
    result = await import_file(engine, Kind.orders, tenant, path)
    assert (result.rows, result.inserted, result.bulk) == (2, 2, True)
    assert await order_ids(engine, tenant) == {"C1": Decimal("19.99"), "C2": Decimal(2)}


async def test_an_extra_column_names_its_line(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """Case csv-extra-column: an error at line 3 and nothing written; with skip-bad, B3
    lands and line 3 is in the bad file with its error."""
    await import_file(
        engine, Kind.orders, tenant, write(tmp_path, "a.csv", HEADER + b"A,Q,2026-01-01,5\n")
    )
    path = write(tmp_path, "orders.csv", HEADER + b"B3,QB,2026-01-01,1\nB4,QB,2026-01-02,2,extra\n")
    message = await refused(engine, tenant, path)
    assert f"{path}:3: has 5 values but the header names 4 (extra: 'extra')" in message
    bad = tmp_path / "bad.csv"
    result = await import_file(engine, Kind.orders, tenant, path, skip_bad_to=bad)
    assert (result.inserted, result.rejected) == (1, 1)
    assert await order_ids(engine, tenant) == {"A": Decimal(5), "B3": Decimal(1)}
    with bad.open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["order_id"] == "B4" and row["amount"] == "2" and row["line"] == "3"
    assert "has 5 values but the header names 4" in row["error"]


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b"o1,c1,2026-01-01,1\no2,c1,2026-01-02\n", 3, "has 3 values but the header names 4"),
        (
            b'o1,c1,2026-01-01,1\no2,c1,"2026-01-02,2\no3,c1,2026-01-03,3\n',
            3,
            "a quoted value is never closed",
        ),
        (b'o1,c1,2026-01-01,1\no2,c1,2026-01-02,"2', 3, "a quoted value is never closed"),
        (
            b"o1,c1,2026-01-01,1\n\\.\no2,c1,2026-01-02,2\n",
            3,
            "has 1 values but the header names 4; a line holding only \\. is no row",
        ),
        (
            b"o1,c1,2026-01-01,1\no2,c\xff1,2026-01-02,2\n",
            3,
            "value 2 holds the byte 0xff, which is not UTF-8 text",
        ),
        (b"o1,c1,2026-01-01,1\no2,c1,2026-01-02,2\x00\n", 3, "amount: contains a NUL character"),
    ],
    ids=["too-few", "unterminated", "unterminated-at-end", "end-of-data-marker", "bad-byte", "nul"],
)
async def test_a_malformed_row_names_its_line_and_skip_bad_sets_only_it_aside(
    engine: AsyncEngine, tenant: str, tmp_path: Path, content: bytes, line: int, problem: str
) -> None:
    path = write(tmp_path, "orders.csv", HEADER + content)
    message = await refused(engine, tenant, path)
    assert f"{path}:{line}: {problem}" in message, message
    assert "Traceback" not in message
    result = await import_file(engine, Kind.orders, tenant, path, skip_bad_to=tmp_path / "bad.csv")
    assert result.rejected == 1
    assert "o1" in await order_ids(engine, tenant)


async def test_a_bad_byte_far_into_the_file_is_found(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """Past the first block COPY sends (and the reader's first buffer): the line is named and
    with skip-bad every other row lands."""
    rows = [f"o{n},c{n % 7},2026-01-01,{n}\n".encode() for n in range(60_000)]
    rows[50_000] = b"o50000,c\xe9,2026-01-01,1\n"
    path = write(tmp_path, "orders.csv", HEADER + b"".join(rows))
    assert path.read_bytes().index(b"\xe9") > ingest.COPY_BLOCK
    message = await refused(engine, tenant, path)
    assert f"{path}:50002: value 2 holds the byte 0xe9, which is not UTF-8 text" in message
    bad = tmp_path / "bad.csv"
    result = await import_file(engine, Kind.orders, tenant, path, skip_bad_to=bad)
    assert (result.inserted, result.rejected) == (59_999, 1)
    assert bad.read_bytes().splitlines()[1].startswith(b"o50000,c\xe9,")


async def test_an_end_of_data_marker_does_not_cut_the_file(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """COPY stops at a line holding only \\. and reports success; a one-column customer
    file whose id is `\\.` must keep the customers after it."""
    path = write(tmp_path, "customers.csv", b"customer_id\nc1\n\\.\nc2\n")
    result = await import_file(engine, Kind.customers, tenant, path)
    assert (result.rows, result.inserted) == (3, 3)


async def test_semicolon_separated_files_are_named(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path, "orders.csv", b"order_id;customer_id;ordered_at;amount\no1;c1;2026-01-01;1,5\n"
    )
    message = await refused(engine, tenant, path)
    assert f"{path}:1: the header is separated by semicolons (';'), not commas" in message


async def test_a_bom_is_skipped_in_json_lines_as_in_csv(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    line = b'{"order_id": "j1", "customer_id": "c1", "ordered_at": "2026-01-01", "amount": 2}\n'
    await import_file(
        engine, Kind.orders, tenant, write(tmp_path, "o.jsonl", b"\xef\xbb\xbf" + line)
    )
    await import_file(
        engine,
        Kind.orders,
        tenant,
        write(tmp_path, "o.csv", b"\xef\xbb\xbf" + HEADER + b"k1,c1,2026-01-01,3\n"),
    )
    assert await order_ids(engine, tenant) == {"j1": Decimal(2), "k1": Decimal(3)}


async def test_json_lines_errors_and_skip_bad(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    good = b'{"order_id": "j1", "customer_id": "c1", "ordered_at": "2026-01-01", "amount": 2}\n'
    content = (
        good
        + b'{"order_id": "j2", "customer_id": "c\xff", "ordered_at": "2026-01-01", "amount": 2}\n'
        + b'{"order_id": "j3", "amount": NaN}\n'
        + b"[" * 5000
        + b"\n"
        + b'{"order_id": "j4", "customer_id": "c1", "ordered_at": "2026-01-01", "amount": 1'
        + b"0" * 5000
        + b"}\n"
        + b"\n"
        + good.replace(b"j1", b"j5")
    )
    path = write(tmp_path, "orders.jsonl", content)
    message = await refused(engine, tenant, path)
    assert f"{path}:2: column 37 holds the byte 0xff, which is not UTF-8 text" in message
    assert f"{path}:3: not valid JSON: NaN is not JSON" in message
    assert f"{path}:4: not valid JSON" in message
    assert f"{path}:5: amount: " in message and "is too large" in message
    bad = tmp_path / "bad.jsonl"
    result = await import_file(engine, Kind.orders, tenant, path, skip_bad_to=bad)
    assert (result.inserted, result.rejected) == (2, 4)
    written = bad.read_bytes().splitlines()
    assert [exact.loads(r.decode(errors="replace"))["_line"] for r in written] == [2, 3, 4, 5]
    assert b"c\xff" in written[0]


async def test_amounts_with_trailing_zeros_are_exact(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """Case trailing-zeros: 19.990000 fits numeric(18, 4) exactly, on both paths;
    19.99001 would be rounded, and is refused."""
    csv_path = write(tmp_path, "orders.csv", HEADER + b"Z1,X5,2026-01-01T00:00:00Z,19.990000\n")
    jsonl = write(
        tmp_path,
        "orders.jsonl",
        b'{"order_id": "Z2", "customer_id": "X5", "ordered_at": "2026-01-01",'
        b' "amount": 1.50000000}\n',
    )
    await import_file(engine, Kind.orders, tenant, csv_path)
    await import_file(engine, Kind.orders, tenant, jsonl)
    assert await order_ids(engine, tenant) == {"Z1": Decimal("19.99"), "Z2": Decimal("1.5")}
    message = await refused(
        engine, tenant, write(tmp_path, "b.csv", HEADER + b"Z3,X5,2026-01-01,19.99001\n")
    )
    assert "19.99001 has more than 4 decimal places that are not zero" in message


async def test_json_lines_numbers_are_stored_exactly(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """Case jsonl-exact-numbers: no binary float between the file and the database."""
    path = write(
        tmp_path,
        "customers.jsonl",
        b'{"customer_id": "J1", "attributes": {"ltv": 1234567890123.4567, '
        b'"ext_id": 12345678901234567890, "r": [0.1, 1.10, 1E+3]}}\n',
    )
    await import_file(engine, Kind.customers, tenant, path)
    async with engine.connect() as connection:
        stored = (
            await connection.execute(
                text(
                    "SELECT attributes->>'ltv', attributes->>'ext_id', attributes->>'r'"
                    " FROM customers WHERE tenant_id = :t AND external_id = 'J1'"
                ),
                {"t": tenant},
            )
        ).one()
    assert tuple(stored) == ("1234567890123.4567", "12345678901234567890", "[0.1, 1.10, 1000]")


async def test_csv_attribute_columns_are_typed_as_rules_compare_them(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """Case csv-attribute-types: numbers and true/false in `attributes.KEY` columns are
    JSON numbers and booleans, as in JSON Lines; `01234` stays text."""
    path = write(
        tmp_path,
        "customers.csv",
        b"customer_id,attributes.credit_limit,attributes.newsletter,attributes.zip\n"
        b"K1,15000,true,01234\nK2,9999.5,false,12\nK3,1e5,yes,x\n",
    )
    await import_file(engine, Kind.customers, tenant, path)
    await publish(
        engine,
        tenant,
        "scheme credit {\n  tier HighCredit when attributes.credit_limit >= 10000\n"
        "  tier Subscriber when attributes.newsletter = true\n"
        '  tier Zipped when attributes.zip = "01234"\n  tier Other otherwise\n}\n',
    )
    await evaluation.evaluate_all(engine, tenant)
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "credit") == {
            "K1": "HighCredit",
            "K2": "Other",
            "K3": "Other",
        }
        types = await connection.execute(
            text(
                "SELECT external_id, jsonb_typeof(attributes->'credit_limit'),"
                " jsonb_typeof(attributes->'newsletter'), attributes->'zip'"
                " FROM customers WHERE tenant_id = :t ORDER BY 1"
            ),
            {"t": tenant},
        )
        assert [tuple(r) for r in types] == [
            ("K1", "number", "boolean", "01234"),
            ("K2", "number", "boolean", 12),
            ("K3", "string", "string", "x"),
        ]


async def test_text_postgres_cannot_hold_is_refused_with_its_place(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """NUL and lone surrogates (a byte that is not UTF-8 in a header; a JSON `\\u0000` or
    `\\ud800` escape, in a key or a value, at any depth) reached the driver, which crashed the
    import (found by the import fuzz test); each is now a `file:line:` refusal."""
    rows = b'c1,41,"{""a"": 1.5}",gold\r\n'

    async def message(name: str, content: bytes) -> str:
        before = await snapshot(engine, tenant)
        with pytest.raises(IngestError) as caught:
            await import_file(engine, Kind.customers, tenant, write(tmp_path, name, content))
        assert await snapshot(engine, tenant) == before
        return str(caught.value)

    header = b"customer_id,age,attributes,attributes.%s\r\n"
    nul = await message("nul.csv", header % b"\x00lan" + rows)
    assert "nul.csv:1: 'attributes.\\x00lan': column name contains a NUL character" in nul
    byte = await message("byte.csv", header % b"\x80lan" + rows)
    assert "byte.csv:1: 'attributes.\\udc80lan': column name holds the byte 0x80, which" in byte
    lines = [
        b'{"customer_id": "c1", "attributes": {"plan": {"a\\u0000": 1}}}',
        b'{"customer_id": "c2", "attributes": {"tags": ["ok", "\\ud800"]}}',
        b'{"customer_id": "c3", "name": "Ann \\udfff"}',
    ]
    found = await message("c.jsonl", b"\n".join(lines) + b"\n")
    assert "c.jsonl:1: attributes: 'plan.a\\x00' in this JSON object" in found
    assert "c.jsonl:2: attributes: 'tags[1]' in this JSON object" in found
    assert "c.jsonl:3: name: contains \\udfff, which is not UTF-8 text" in found
    # A JSON Lines attribute column holding an object is looked into too.
    column = b'{"customer_id": "c4", "attributes.plan": {"k": "\\u0000"}}\n'
    assert "c4.jsonl:1: attributes.*: 'plan.k':" in await message("c4.jsonl", column)
    # Set aside with --skip-bad, the rows are written back as they came: the escapes as
    # escapes (the file stays UTF-8 JSON), a byte that was not UTF-8 as that byte.
    good = b'{"customer_id": "c5", "name": "Eve"}\n'
    source = write(tmp_path, "mixed.jsonl", b"\n".join(lines) + b"\n" + good)
    aside = tmp_path / "bad.jsonl"
    result = await import_file(engine, Kind.customers, tenant, source, skip_bad_to=aside)
    assert (result.inserted, result.rejected) == (1, 3)
    written = [json.loads(line) for line in aside.read_text(encoding="utf-8").splitlines()]
    assert [r["_line"] for r in written] == [1, 2, 3]
    assert written[2]["name"] == "Ann \udfff" and written[1]["attributes"]["tags"][1] == "\ud800"
