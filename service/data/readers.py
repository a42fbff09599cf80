"""Rows from files: CSV with a header naming the canonical fields, or JSON Lines.

Readers yield ``(line, mapping)`` pairs and report what is wrong with a file as a whole (its
header); what is wrong with one row is the caller's to find (service.data.records).
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from service.data.records import (
    ATTRIBUTE_PREFIX,
    FIELDS,
    TEXT,
    FieldError,
    Kind,
    RowError,
    id_field,
    is_missing,
    known_fields,
)
from service.errors import UserError

MAX_LISTED_ERRORS = 20
JSON_LINES = {".jsonl", ".ndjson", ".json"}


class IngestError(UserError):
    """A file with bad rows; nothing of it was written."""

    def __init__(
        self,
        source: str,
        errors: Sequence[RowError],
        bad_rows: int,
        outcome: str = "nothing imported (use --skip-bad FILE to import the good rows)",
    ) -> None:
        self.source = source
        self.errors = list(errors)
        self.bad_rows = bad_rows
        listed = "\n".join("  " + error.render(source) for error in errors[:MAX_LISTED_ERRORS])
        more = len(errors) - MAX_LISTED_ERRORS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        rows = "1 bad row" if bad_rows == 1 else f"{bad_rows} bad rows"
        super().__init__(f"{source}: {rows}, {outcome}:\n{listed}{tail}")

    @classmethod
    def of_rows(cls, source: str, bad: Sequence[BadRow]) -> IngestError:
        return cls(source, [error for row in bad for error in row.errors], len(bad))


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


def read_rows(path: Path, kind: Kind, *, required: Collection[str] | None = None) -> RawRows:
    """Open a CSV or JSON Lines file (by extension) as rows; header problems raise IngestError.

    ``required``: the fields a CSV header must name (default: those an import of ``kind``
    requires)."""
    suffix = path.suffix.lower()
    if suffix in JSON_LINES:
        return RawRows(_jsonl_rows(path, str(path)))
    if suffix in {".csv", ".txt"}:
        if required is None:
            required = [spec.name for spec in FIELDS[kind] if spec.required]
        return _csv_rows(path, kind, required)
    raise UserError(f"{path}: unknown file type {suffix!r}; use .csv or .jsonl")


def read_ids(path: Path, kind: Kind) -> list[str]:
    """The ids of a file naming ``kind`` rows to delete, in file order: CSV with a header
    naming the kind's id field (`customer_id`, `order_id`, `event_id`), or JSON Lines objects
    with it. Other fields an import of ``kind`` knows are ignored, so the file of an import
    names what it loaded. Raises IngestError naming the file, line and field of every bad
    row (then nothing may be deleted)."""
    name = id_field(kind)
    try:
        raw = read_rows(path, kind, required=[name])
    except IngestError as error:
        raise IngestError(error.source, error.errors, error.bad_rows, "nothing deleted") from None
    ids: list[str] = []
    errors: list[RowError] = []
    bad = 0
    for line, row in raw.rows:
        problems = row_problems(line, row, kind, check_names=not raw.fields)
        if not problems:
            value = row.get(name)
            try:
                if is_missing(value):
                    raise FieldError("is required to name what to delete, but missing")
                ids.append(TEXT.parse(value))
            except FieldError as error:
                problems.append(RowError(line, name, str(error)))
        bad += bool(problems)
        errors.extend(problems)
    if errors:
        raise IngestError(str(path), errors, bad, "nothing deleted")
    return ids


def _csv_rows(path: Path, kind: Kind, required: Collection[str]) -> RawRows:
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
    problems = _header_problems(kind, header, required)
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


def _header_problems(kind: Kind, header: list[str], required: Collection[str]) -> list[RowError]:
    known = known_fields(kind)
    problems: list[RowError] = []
    for name in {name for name in header if header.count(name) > 1}:
        problems.append(RowError(1, name, "column appears more than once in the header"))
    for name in header:
        if name in known or (kind is Kind.customers and name.startswith(ATTRIBUTE_PREFIX)):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
        problems.append(RowError(1, name, f"unknown column{hint}"))
    for name in required:
        if name not in header:
            problems.append(RowError(1, name, "required column is missing from the header"))
    return problems


def is_unreadable(row: Mapping[str, Any]) -> bool:
    return isinstance(row.get(""), _WrongWidth | _Unreadable)


def row_problems(
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


def write_bad_rows(path: Path, bad: Sequence[BadRow], header: Sequence[str]) -> None:
    """Bad rows as they came, plus ``line`` and ``error``, in the file's own format."""
    if path.suffix.lower() in JSON_LINES or not header:
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


def count_data_rows(path: Path) -> int:
    """Rows in a file, cheaply (for the progress bar): its newlines less the CSV header."""
    newlines = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            newlines += block.count(b"\n")
    is_csv = path.suffix.lower() not in JSON_LINES
    return max(newlines - (1 if is_csv else 0), 0)
