"""Fuzzing the readers and the import with random and mutated CSV / JSON Lines bytes.

The property, for every file: the import either lands every row and reports no error (exit 0
of `tierwise import`), or raises UserError whose every line of detail is `file:line: ...`
(exit 1 with that sentence) and the tenant's tables are exactly as before; nothing else
escapes (a traceback). With skip-bad the good rows land and every bad one is in the bad file.

A few hundred cases run in the normal suite; `TIERWISE_FUZZ_EXAMPLES=10000 pytest -q
tests/fuzz` runs more (docs/fuzzing.md has the last long run).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import URL

from service.data.ingest import import_file
from service.data.readers import IngestError, read_ids
from service.data.records import Kind
from service.db import exact
from service.db.database import create_engine
from service.errors import UserError

EXAMPLES = int(os.environ.get("TIERWISE_FUZZ_EXAMPLES", "250"))

ORDER_HEADER = "order_id,customer_id,ordered_at,amount,currency,category"
CUSTOMER_HEADER = "customer_id,age,region,registered_at,attributes,attributes.plan"
texts = st.text(st.characters(codec="utf-8"), max_size=5)
order_values = st.tuples(
    st.sampled_from(["o1", "o2", "o3", "", " o4"]),
    st.sampled_from(["c1", "c2", ""]),
    st.sampled_from(["2026-01-01", "2026-02-03T10:00:00Z", "2026-13-01", "x", ""]),
    st.one_of(
        st.decimals(-1000, 1000, places=2).map(str),
        st.sampled_from(["19.990000", "1.23456", "NaN", "1e3", "", "ten", "1" * 30]),
    ),
    st.sampled_from(["EUR", ""]),
    texts,
)
customer_values = st.tuples(
    st.sampled_from(["c1", "c2", "c3", ""]),
    st.sampled_from(["41", "", "200", "x"]),
    texts,
    st.sampled_from(["2025-01-01", "", "never"]),
    st.sampled_from(['{"a": 1.5}', "", "[1]", "{", '{"a": 12345678901234567890.123}']),
    st.sampled_from(["gold", "15000", "01234", "true", ""]),
)


def _csv(header: str, rows: list[tuple[str, ...]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows([header.split(","), *rows])
    return buffer.getvalue().encode("utf-8", errors="surrogatepass")


def _jsonl(header: str, rows: list[tuple[str, ...]]) -> bytes:
    lines = []
    for row in rows:
        record = {name: value for name, value in zip(header.split(","), row, strict=True) if value}
        if record.get("amount"):
            with contextlib.suppress(ValueError):
                record["amount"] = exact.loads(record["amount"])
        lines.append(exact.dumps(record))
    return "\n".join(lines).encode("utf-8", errors="surrogatepass") + b"\n"


MUTATIONS = [
    b"\n",
    b"\r\n",
    b"\r",
    b",",
    b";",
    b'"',
    b"\\.\n",
    b"\n\\.\n",
    b"\xff",
    b"\xc3",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\n\n",
    b"{",
    b"}",
    b'"amount": 1e999',
    b"[" * 200,
]


@st.composite
def mutated(draw: st.DrawFn, kind: Kind, suffix: str) -> bytes:
    header = ORDER_HEADER if kind is Kind.orders else CUSTOMER_HEADER
    values = order_values if kind is Kind.orders else customer_values
    rows = draw(st.lists(values, min_size=0, max_size=6))
    content = bytearray(_csv(header, rows) if suffix == ".csv" else _jsonl(header, rows))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(content)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "truncate"]))
        if action == "insert":
            piece = draw(st.one_of(st.sampled_from(MUTATIONS), st.binary(min_size=1, max_size=4)))
            content[at:at] = piece
        elif action == "delete":
            del content[at : at + draw(st.integers(1, 8))]
        elif action == "replace" and at < len(content):
            content[at] = draw(st.integers(0, 255))
        elif action == "duplicate":
            start = content.rfind(b"\n", 0, at) + 1
            end = content.find(b"\n", at)
            line = bytes(content[start : end + 1 if end >= 0 else len(content)])
            content[start:start] = line
        else:
            del content[at:]
    return bytes(content)


@st.composite
def files(draw: st.DrawFn) -> tuple[Kind, str, bytes]:
    kind = draw(st.sampled_from([Kind.orders, Kind.customers]))
    suffix = draw(st.sampled_from([".csv", ".jsonl"]))
    header = (ORDER_HEADER if kind is Kind.orders else CUSTOMER_HEADER).encode()
    content = draw(
        st.one_of(
            mutated(kind, suffix),
            mutated(kind, suffix),
            st.binary(max_size=200).map(lambda b: header + b"\n" + b if suffix == ".csv" else b),
            st.binary(max_size=200),
        )
    )
    return kind, suffix, content


TABLES = ("customers", "orders", "events", "customer_metrics", "memberships", "transitions")


async def _stored(connection: object, tenant: str) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        result = await connection.execute(  # type: ignore[attr-defined]
            text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant}
        )
        counts[table] = result.scalar_one()
    return counts


def _check_message(error: UserError, path: Path) -> None:
    message = str(error)
    assert "Traceback" not in message
    first, *details = message.split("\n")
    assert first.startswith(f"{path}:"), message
    for detail in details:
        detail = detail.strip()
        if detail.startswith("..."):
            continue
        assert re.match(rf"{re.escape(str(path))}:\d+: ", detail), message


class _Fuzz:
    """One engine and one event loop for all examples (an engine each would be slower than
    the imports)."""

    def __init__(self, database: URL, folder: Path) -> None:
        self.runner = asyncio.Runner()
        self.engine = create_engine(database, pool_size=2)
        self.folder = folder

    def close(self) -> None:
        self.runner.run(self.engine.dispose())
        self.runner.close()

    def check(self, kind: Kind, suffix: str, content: bytes) -> None:
        self.runner.run(self._check(kind, suffix, content))

    async def _check(self, kind: Kind, suffix: str, content: bytes) -> None:
        path = self.folder / f"{kind}{suffix}"
        path.write_bytes(content)
        tenant = f"f_{secrets.token_hex(6)}"
        try:
            read_ids(path, kind)  # the delete command's reader: ids, or a sentence
        except UserError as error:
            _check_message(error, path)
        try:
            result = await import_file(self.engine, kind, tenant, path)
        except UserError as error:
            _check_message(error, path)
            async with self.engine.connect() as connection:
                assert set((await _stored(connection, tenant)).values()) == {0}
            header_error = isinstance(error, IngestError) and error.bad_rows == 0
        else:
            assert result.rejected == 0
            header_error = False
        bad = self.folder / f"bad{suffix}"
        bad.unlink(missing_ok=True)
        try:
            skipped = await import_file(self.engine, kind, f"{tenant}s", path, skip_bad_to=bad)
        except UserError as error:
            # Only what concerns the file as a whole (its header) refuses it with skip-bad.
            assert header_error or not isinstance(error, IngestError), str(error)
            _check_message(error, path)
            return
        assert not header_error
        written = bad.read_bytes().count(b"\n") if bad.exists() else 0
        if suffix == ".jsonl":
            assert written == skipped.rejected
        else:
            assert (written > skipped.rejected) == (skipped.rejected > 0)


@pytest.fixture(scope="module")
def fuzz(database: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Fuzz]:
    harness = _Fuzz(database, tmp_path_factory.mktemp("fuzz"))
    yield harness
    harness.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=files())
def test_any_file_imports_or_is_refused_with_its_line(
    fuzz: _Fuzz, case: tuple[Kind, str, bytes]
) -> None:
    fuzz.check(*case)
