"""`tierwise import` of malformed files, as a user runs it: one sentence naming the file and
line, never a traceback; with --skip-bad, the bad rows set aside and the rest landed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.tables import orders
from tests.support import tierwise

HEADER = b"order_id,customer_id,ordered_at,amount\n"


async def stored(engine: AsyncEngine, tenant: str) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(orders.c.external_id)
            .where(orders.c.tenant_id == tenant)
            .order_by(orders.c.external_id)
        )
        return list(rows.scalars())


async def test_files_copy_refuses_are_explained_not_crashed(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """Cases csv-blank-line and csv-extra-column: COPY refused both with asyncpg's own
    error type, and the import ended in its traceback."""
    blank = tmp_path / "blank.csv"
    blank.write_bytes(HEADER + b"B1,QB,2026-01-01,1\n\nB2,QB,2026-01-02,2\n")
    result = tierwise(database, "import", "orders", str(blank), "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    assert "2 rows read, 2 orders inserted" in result.stdout

    extra = tmp_path / "extra.csv"
    extra.write_bytes(HEADER + b"B3,QB,2026-01-01,1\nB4,QB,2026-01-02,2,extra\n")
    result = tierwise(database, "import", "orders", str(extra), "--tenant", tenant)
    assert result.returncode == 1
    assert f"{extra}:3: has 5 values but the header names 4 (extra: 'extra')" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert await stored(engine, tenant) == ["B1", "B2"]

    bad = tmp_path / "bad.csv"
    result = tierwise(
        database, "import", "orders", str(extra), "--tenant", tenant, "--skip-bad", str(bad)
    )
    assert result.returncode == 0, result.stderr
    assert "1 bad rows skipped" in result.stdout
    assert await stored(engine, tenant) == ["B1", "B2", "B3"]
    assert bad.read_text().splitlines()[1].startswith("B4,QB,2026-01-02,2,3,has 5 values")


def test_other_malformed_files_name_file_and_line(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    cases = {
        "quote.csv": (HEADER + b'o1,c1,"2026-01-01,1\no2,c1,2026-01-02,2\n', ":2: a quoted"),
        "bytes.csv": (HEADER + b"o1,c1,2026-01-01,1\no2,c\xff,2026-01-02,2\n", ":3: value 2"),
        "marker.csv": (HEADER + b"o1,c1,2026-01-01,1\n\\.\no2,c1,2026-01-02,2\n", ":3: has 1"),
        "semi.csv": (b"order_id;customer_id;ordered_at;amount\n", ":1: the header is separated"),
        "bom.jsonl": (b"\xef\xbb\xbf" + b'{"order_id": 1}\n{"x\n', ":1: customer_id: is requ"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        result = tierwise(database, "import", "orders", str(path), "--tenant", tenant)
        assert result.returncode == 1, name
        assert f"{path}{expected}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
