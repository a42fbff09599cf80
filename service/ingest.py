"""Bulk ingest: rows are checked in Python, COPYed into a staging table and upserted in one
set-based statement per table, all inside one transaction.

A file with a bad row is rejected whole (nothing written) unless the caller asks to skip bad
rows. Upserts are idempotent on external ids: loading the same rows twice changes nothing.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import rollups
from service.errors import UserError
from service.records import (
    ATTRIBUTE_PREFIX,
    FIELDS,
    FieldError,
    Kind,
    RowError,
    check_tenant_id,
    known_fields,
    parse_row,
)

CHUNK_ROWS = 20_000
MAX_LISTED_ERRORS = 20

_STAGE_TYPES = {
    "age": "integer",
    "company_size": "integer",
    "registered_at": "timestamptz",
    "attributes": "jsonb",
    "amount": "numeric",
    "ordered_at": "timestamptz",
    "occurred_at": "timestamptz",
    "value": "numeric",
    "properties": "jsonb",
}


@dataclass
class ImportResult:
    kind: Kind
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    customers_created: int = 0

    def summary(self) -> str:
        parts = [
            f"{self.rows} rows read",
            f"{self.inserted} {self.kind} inserted",
            f"{self.updated} updated",
            f"{self.unchanged} unchanged",
        ]
        if self.customers_created and self.kind is not Kind.customers:
            parts.append(f"{self.customers_created} new customers created")
        if self.rejected:
            parts.append(f"{self.rejected} bad rows skipped")
        return ", ".join(parts)


class IngestError(UserError):
    """A file with bad rows; nothing of it was written."""

    def __init__(self, source: str, errors: Sequence[RowError], bad_rows: int) -> None:
        self.source = source
        self.errors = list(errors)
        self.bad_rows = bad_rows
        listed = "\n".join("  " + error.render(source) for error in errors[:MAX_LISTED_ERRORS])
        more = len(errors) - MAX_LISTED_ERRORS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        rows = "1 bad row" if bad_rows == 1 else f"{bad_rows} bad rows"
        super().__init__(
            f"{source}: {rows}, nothing imported (use --skip-bad FILE to import the good rows):\n"
            f"{listed}{tail}"
        )


@dataclass
class BadRow:
    line: int
    raw: Mapping[str, Any]
    errors: list[RowError]


@dataclass
class RawRows:
    """Rows of a file as ``(line, mapping)``, plus problems found before any row (the header)."""

    rows: Iterator[tuple[int, Mapping[str, Any]]]
    fields: list[str] = field(default_factory=list)


def read_rows(path: Path, kind: Kind) -> RawRows:
    """Open a CSV or JSON Lines file (by extension) as rows; header problems raise IngestError."""
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return RawRows(_jsonl_rows(path, str(path)))
    if suffix in {".csv", ".txt"}:
        return _csv_rows(path, kind)
    raise UserError(f"{path}: unknown file type {suffix!r}; use .csv or .jsonl")


def _csv_rows(path: Path, kind: Kind) -> RawRows:
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.reader(handle)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        handle.close()
        return RawRows(iter(()))
    except (UnicodeDecodeError, csv.Error) as error:
        handle.close()
        raise IngestError(
            str(path), [RowError(1, None, f"unreadable header: {error}")], 1
        ) from None
    problems = _header_problems(kind, header)
    if problems:
        handle.close()
        raise IngestError(str(path), problems, 0)

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        with handle:
            line = reader.line_num + 1
            try:
                for values in reader:
                    if values:
                        if len(values) != len(header):
                            yield line, {"": _WrongWidth(len(values), len(header))}
                        else:
                            yield line, dict(zip(header, values, strict=True))
                    line = reader.line_num + 1
            except (UnicodeDecodeError, csv.Error) as error:
                yield line, {"": _Unreadable(str(error))}

    return RawRows(rows(), header)


def _jsonl_rows(path: Path, source: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        try:
            for line, content in enumerate(handle, start=1):
                if not content.strip():
                    continue
                try:
                    value = json.loads(content, parse_float=Decimal)
                except json.JSONDecodeError as error:
                    reason = f"not valid JSON at column {error.colno}: {error.msg}"
                    yield line, {"": _Unreadable(reason)}
                    continue
                if isinstance(value, dict):
                    yield line, value
                else:
                    yield line, {"": _Unreadable("each line must be a JSON object")}
        except UnicodeDecodeError as error:
            yield 0, {"": _Unreadable(f"not UTF-8 text ({error})")}


@dataclass(frozen=True)
class _WrongWidth:
    got: int
    expected: int


@dataclass(frozen=True)
class _Unreadable:
    reason: str


def _header_problems(kind: Kind, header: list[str]) -> list[RowError]:
    known = known_fields(kind)
    problems: list[RowError] = []
    for name in header:
        if name in known or (kind is Kind.customers and name.startswith(ATTRIBUTE_PREFIX)):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
        problems.append(RowError(1, name, f"unknown column{hint}"))
    for spec in FIELDS[kind]:
        if spec.required and spec.name not in header:
            problems.append(RowError(1, spec.name, "required column is missing from the header"))
    return problems


def _is_unreadable(row: Mapping[str, Any]) -> bool:
    return isinstance(row.get(""), _WrongWidth | _Unreadable)


def _row_problems(
    line: int, row: Mapping[str, Any], kind: Kind, *, check_names: bool
) -> list[RowError]:
    """Problems of a row as a whole; field names are checked only where no header did it."""
    marker = row.get("")
    if isinstance(marker, _WrongWidth):
        return [
            RowError(line, None, f"has {marker.got} values but the header names {marker.expected}")
        ]
    if isinstance(marker, _Unreadable):
        return [RowError(line, None, marker.reason)]
    if not check_names:
        return []
    return [
        RowError(line, name, "unknown field")
        for name in row
        if name not in known_fields(kind)
        and not (kind is Kind.customers and name.startswith(ATTRIBUTE_PREFIX))
    ]


ProgressCallback = Callable[[int], None]


async def import_rows(
    engine: AsyncEngine,
    kind: Kind,
    tenant: str,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    source: str,
    skip_bad: bool = False,
    present_fields: Sequence[str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[ImportResult, list[BadRow]]:
    """Check and load ``rows`` in one transaction.

    Raises IngestError (nothing written) when a row is bad, unless ``skip_bad``: then the good
    rows land and the bad ones are returned. ``present_fields`` names the customer fields the
    source carries (a CSV header); other stored fields keep their values on update.
    """
    try:
        check_tenant_id(tenant)
    except FieldError as error:
        raise UserError(str(error)) from None
    result = ImportResult(kind)
    bad: list[BadRow] = []
    async with engine.begin() as connection:
        await _ensure_tenant(connection, tenant)
        stage = _Stage(kind)
        await connection.execute(text(stage.create_sql()))
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None, "an open connection has a driver connection"
        chunk: list[tuple[Any, ...]] = []
        seen_fields: set[str] = set(present_fields or ())
        for line, raw in rows:
            result.rows += 1
            problems = _row_problems(line, raw, kind, check_names=present_fields is None)
            parsed = [] if _is_unreadable(raw) else parse_row(kind, line, raw)
            if isinstance(parsed, list):
                problems += parsed
            if problems or isinstance(parsed, list):
                bad.append(BadRow(line, raw, problems))
                continue
            if present_fields is None:
                seen_fields.update(raw)
            chunk.append((line, *stage.encode(parsed)))
            if len(chunk) >= CHUNK_ROWS:
                await driver.copy_records_to_table(stage.name, records=chunk, columns=stage.columns)
                if on_progress:
                    on_progress(len(chunk))
                chunk = []
        if bad and not skip_bad:
            raise IngestError(source, [e for row in bad for e in row.errors], len(bad))
        if chunk:
            await driver.copy_records_to_table(stage.name, records=chunk, columns=stage.columns)
            if on_progress:
                on_progress(len(chunk))
        result.rejected = len(bad)
        await _upsert(connection, kind, tenant, seen_fields, result)
    return result, bad


async def import_file(
    engine: AsyncEngine,
    kind: Kind,
    tenant: str,
    path: Path,
    *,
    skip_bad_to: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import one CSV or JSON Lines file; with ``skip_bad_to``, bad rows go to that file."""
    raw = read_rows(path, kind)
    result, bad = await import_rows(
        engine,
        kind,
        tenant,
        raw.rows,
        source=str(path),
        skip_bad=skip_bad_to is not None,
        present_fields=raw.fields or None,
        on_progress=on_progress,
    )
    if skip_bad_to is not None and bad:
        write_bad_rows(skip_bad_to, bad, raw.fields)
    return result


def write_bad_rows(path: Path, bad: Sequence[BadRow], header: Sequence[str]) -> None:
    """Bad rows as they came, plus ``line`` and ``error``, in the file's own format."""
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"} or not header:
        with path.open("w", encoding="utf-8") as handle:
            for row in bad:
                record = {k: v for k, v in row.raw.items() if k}
                record |= {"_line": row.line, "_error": _describe(row.errors)}
                handle.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, "line", "error"])
        for row in bad:
            writer.writerow(
                [*(row.raw.get(name, "") for name in header), row.line, _describe(row.errors)]
            )


def _describe(errors: Sequence[RowError]) -> str:
    return "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors)


class _Stage:
    """The temporary table a load is COPYed into; it disappears with the transaction."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.name = f"stage_{kind}"
        self.columns = ["line", *(spec.stage_column for spec in FIELDS[kind])]

    def encode(self, record: tuple[Any, ...]) -> tuple[Any, ...]:
        """asyncpg takes jsonb as text."""
        return tuple(
            json.dumps(value, default=_json_number, ensure_ascii=False)
            if isinstance(value, dict)
            else value
            for value in record
        )

    def create_sql(self) -> str:
        columns = ", ".join(f"{c} {_STAGE_TYPES.get(c, 'text')}" for c in self.columns[1:])
        return f"CREATE TEMP TABLE {self.name} (line integer, {columns}) ON COMMIT DROP"


def _json_number(value: object) -> float:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


async def _ensure_tenant(connection: AsyncConnection, tenant: str) -> None:
    await connection.execute(
        text("INSERT INTO tenants (id, name) VALUES (:t, :t) ON CONFLICT (id) DO NOTHING"),
        {"t": tenant},
    )


# The last line wins when a file names the same external id twice.
_LATEST = "SELECT DISTINCT ON (external_id) * FROM {stage} ORDER BY external_id, line DESC"

_CUSTOMER_COLUMNS = [spec.stage_column for spec in FIELDS[Kind.customers]][1:]


async def _upsert(
    connection: AsyncConnection, kind: Kind, tenant: str, fields: set[str], result: ImportResult
) -> None:
    await connection.execute(text(rollups.CREATE_AFFECTED))
    if kind is Kind.customers:
        await _upsert_customers(connection, tenant, fields, result)
        return
    result.customers_created = await _create_missing_customers(connection, kind, tenant)
    table = "orders" if kind is Kind.orders else "events"
    payload = [spec.stage_column for spec in FIELDS[kind]][2:]  # after external ids
    # An order moved to another customer changes the old customer's rollup too.
    await connection.execute(
        text(
            f"""
            INSERT INTO affected_customers
            SELECT t.customer_id FROM {table} t
            JOIN stage_{kind} s ON t.external_id = s.external_id
            WHERE t.tenant_id = :t
            """
        ),
        {"t": tenant},
    )
    columns = ", ".join(payload)
    counts = await connection.execute(
        text(
            f"""
            WITH src AS ({_LATEST.format(stage=f"stage_{kind}")}),
            up AS (
                INSERT INTO {table} (tenant_id, external_id, customer_id, {columns})
                SELECT :t, src.external_id, c.id, {", ".join(_insert_value(c) for c in payload)}
                FROM src JOIN customers c
                  ON c.tenant_id = :t AND c.external_id = src.customer_external_id
                ON CONFLICT (tenant_id, external_id) DO UPDATE SET
                    customer_id = EXCLUDED.customer_id,
                    {", ".join(f"{c} = EXCLUDED.{c}" for c in payload)}
                WHERE ({table}.customer_id, {", ".join(f"{table}.{c}" for c in payload)})
                    IS DISTINCT FROM
                    (EXCLUDED.customer_id, {", ".join(f"EXCLUDED.{c}" for c in payload)})
                RETURNING customer_id, (xmax = 0) AS inserted
            ),
            touched AS (INSERT INTO affected_customers SELECT customer_id FROM up)
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                   (SELECT count(*) FROM src)
            FROM up
            """
        ),
        {"t": tenant},
    )
    inserted, updated, distinct = counts.one()
    result.inserted, result.updated = inserted, updated
    result.unchanged = distinct - inserted - updated
    if kind is Kind.orders:
        await rollups.refresh_affected(connection, tenant)


async def _create_missing_customers(connection: AsyncConnection, kind: Kind, tenant: str) -> int:
    created = await connection.execute(
        text(
            f"""
            WITH made AS (
                INSERT INTO customers (tenant_id, external_id)
                SELECT DISTINCT :t, customer_external_id FROM stage_{kind}
                ON CONFLICT (tenant_id, external_id) DO NOTHING
                RETURNING 1
            )
            SELECT count(*) FROM made
            """
        ),
        {"t": tenant},
    )
    return int(created.scalar_one())


async def _upsert_customers(
    connection: AsyncConnection, tenant: str, fields: set[str], result: ImportResult
) -> None:
    # Only the columns the source carries are written, so a file of `customer_id,region`
    # does not erase everyone's age. Attributes merge key by key.
    given = [
        column
        for column in _CUSTOMER_COLUMNS
        if column in fields
        or (column == "attributes" and any(f.startswith(ATTRIBUTE_PREFIX) for f in fields))
    ]

    def new_value(column: str) -> str:
        if column == "attributes":
            return "customers.attributes || coalesce(EXCLUDED.attributes, '{}'::jsonb)"
        return f"EXCLUDED.{column}"

    insert_columns = ", ".join(["tenant_id", "external_id", *given])
    select_columns = ", ".join(
        [":t", "src.external_id", *(_insert_value(column) for column in given)]
    )
    if given:
        conflict = (
            "DO UPDATE SET "
            + ", ".join(f"{c} = {new_value(c)}" for c in given)
            + ", updated_at = now() WHERE ("
            + ", ".join(f"customers.{c}" for c in given)
            + ") IS DISTINCT FROM ("
            + ", ".join(new_value(c) for c in given)
            + ")"
        )
    else:
        conflict = "DO NOTHING"
    counts = await connection.execute(
        text(
            f"""
            WITH src AS ({_LATEST.format(stage="stage_customers")}),
            up AS (
                INSERT INTO customers AS customers ({insert_columns})
                SELECT {select_columns} FROM src
                ON CONFLICT (tenant_id, external_id) {conflict}
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                   (SELECT count(*) FROM src)
            FROM up
            """
        ),
        {"t": tenant},
    )
    inserted, updated, distinct = counts.one()
    result.inserted, result.updated = inserted, updated
    result.unchanged = distinct - inserted - updated
    result.customers_created = inserted


def _insert_value(column: str) -> str:
    if _STAGE_TYPES.get(column) == "jsonb":
        return f"coalesce(src.{column}, '{{}}'::jsonb)"
    return f"src.{column}"


def count_data_rows(path: Path) -> int:
    """Rows in a file, cheaply (for the progress bar): its newlines less the CSV header."""
    newlines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            newlines += block.count(b"\n")
    is_csv = path.suffix.lower() not in {".jsonl", ".ndjson", ".json"}
    return max(newlines - (1 if is_csv else 0), 0)


__all__ = [
    "ImportResult",
    "IngestError",
    "count_data_rows",
    "import_file",
    "import_rows",
]
