"""Rows from files: CSV with a header naming the canonical fields, or JSON Lines.

Readers yield ``(line, mapping)`` pairs and report what is wrong with a file as a whole (its
header); what is wrong with one row is the caller's to find (service.data.records).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from service.data.kinds import Kind
from service.data.records import (
    ATTRIBUTE_PREFIX,
    FIELDS,
    TEXT,
    UNSTORABLE,
    FieldError,
    RowError,
    id_field,
    is_missing,
    known_fields,
    unstorable_reason,
)
from service.db import exact
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
    # Bytes that are not UTF-8 become lone surrogates (surrogateescape), so one bad byte
    # makes one bad row, wherever it is, and the rows after it are still read.
    handle = path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    lines = _LineTap(handle)
    reader = csv.reader(lines)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        handle.close()
        return RawRows(iter(()))
    except csv.Error as error:
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
            while True:
                line = reader.line_num + 1
                lines.taken.clear()
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    yield line, {"": _Unreadable(str(error), lines.text())}
                    if reader.line_num < line:  # nothing consumed: nothing more to read
                        return
                    continue
                if not values:
                    continue  # a blank line is no row
                problem = _record_problem(values, lines, reader.line_num - line)
                if problem is not None:
                    yield line, {"": _Unreadable(problem, lines.text(), values)}
                elif len(values) != len(header):
                    yield line, {"": _WrongWidth(values, len(header))}
                else:
                    yield line, dict(zip(header, values, strict=True))

    return RawRows(rows(), header)


class _LineTap:
    """The lines a csv.reader takes, kept until cleared: the raw text of one record."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.taken.append(line)
        return line

    def text(self) -> str:
        return "".join(self.taken)


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _record_problem(values: list[str], lines: _LineTap, extra_lines: int) -> str | None:
    """What makes a record unreadable as a whole: bytes that are not UTF-8, or a quote that
    is never closed (it swallows the rest of the file)."""
    for column, value in enumerate(values, start=1):
        bad = _NOT_UTF8.search(value)
        if bad is not None:
            byte = ord(bad.group()) - 0xDC00
            return f"value {column} holds the byte 0x{byte:02x}, which is not UTF-8 text"
    raw = lines.text()
    if '"' in raw and (extra_lines > 0 or not raw.endswith(("\n", "\r"))):
        try:
            list(csv.reader(io.StringIO(raw, newline=""), strict=True))
        except csv.Error as error:
            if "unexpected end of data" in str(error):
                return 'a quoted value is never closed (a " without its closing ")'
    return None


def _jsonl_rows(path: Path, source: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with path.open("rb") as handle:
        for line, content in enumerate(handle, start=1):
            if line == 1:
                content = content.removeprefix(codecs.BOM_UTF8)
            if not content.strip():
                continue
            raw = content.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as error:
                reason = (
                    f"column {error.start + 1} holds the byte 0x{content[error.start]:02x}, "
                    "which is not UTF-8 text"
                )
                yield line, {"": _Unreadable(reason, raw)}
                continue
            try:
                value = exact.loads(text)
            except json.JSONDecodeError as error:
                reason = f"not valid JSON at column {error.colno}: {error.msg}"
                yield line, {"": _Unreadable(reason, raw)}
                continue
            except ValueError as error:
                yield line, {"": _Unreadable(f"not valid JSON: {error}", raw)}
                continue
            if isinstance(value, dict):
                yield line, value
            else:
                yield line, {"": _Unreadable("each line must be a JSON object", raw)}


@dataclass(frozen=True)
class _WrongWidth:
    values: list[str]
    expected: int

    def describe(self) -> str:
        got = len(self.values)
        message = f"has {got} values but the header names {self.expected}"
        if got > self.expected:
            extra = ", ".join(repr(v) for v in self.values[self.expected :])
            message += f" (extra: {extra})"
        if got == 1 and self.values[0].strip() == "\\.":
            message += "; a line holding only \\. is no row"
        return message


@dataclass(frozen=True)
class _Unreadable:
    reason: str
    text: str = ""
    """The line(s) as they came, for the file of bad rows."""
    values: list[str] | None = None
    """The values, when the record split into them (CSV)."""


def _header_problems(kind: Kind, header: list[str], required: Collection[str]) -> list[RowError]:
    known = known_fields(kind)
    for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
        names = [part.strip() for part in ",".join(header).split(separator)]
        if len(names) > 1 and len(set(names) & set(known)) >= min(2, len(required)):
            return [
                RowError(
                    1,
                    None,
                    f"the header is separated by {name} ({separator!r}), not commas: Tierwise "
                    "reads comma-separated CSV; export the file with commas (and a point as "
                    "the decimal mark)",
                )
            ]
    problems = [
        RowError(1, ascii(name), f"column name {unstorable_reason(name, read_as_bytes=True)}")
        for name in header
        if UNSTORABLE.search(name)
    ]
    if problems:
        return problems
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
        return [RowError(line, None, marker.describe())]
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


def _bytes_or_escapes(error: UnicodeError) -> tuple[bytes, int]:
    """The encoding error handler of bad-row files: a surrogate that stands for a byte that
    was not UTF-8 (surrogateescape's \\udc80 to \\udcff) is that byte again; any other (a JSON
    ``\\ud800`` escape read as a lone surrogate) is written as that escape."""
    assert isinstance(error, UnicodeEncodeError)
    text = error.object[error.start : error.end]
    written = b"".join(
        bytes([ord(c) - 0xDC00]) if "\udc80" <= c <= "\udcff" else f"\\u{ord(c):04x}".encode()
        for c in text
    )
    return written, error.end


codecs.register_error("tierwise-bad-rows", _bytes_or_escapes)


def write_bad_rows(path: Path, bad: Sequence[BadRow], header: Sequence[str]) -> None:
    """Bad rows as they came, plus ``line`` and ``error``, in the file's own format. A row
    that could not be read into fields keeps its raw text (JSON Lines: ``_raw``; CSV: in the
    error); bytes that were not UTF-8 are written back as they were, lone surrogates from
    JSON escapes as those escapes."""
    if path.suffix.lower() in JSON_LINES or not header:
        with path.open("w", encoding="utf-8", errors="tierwise-bad-rows") as handle:
            for row in bad:
                record = {k: v for k, v in row.raw.items() if k}
                marker = row.raw.get("")
                if isinstance(marker, _Unreadable):
                    record["_raw"] = marker.text
                elif isinstance(marker, _WrongWidth):
                    record["_raw"] = marker.values
                record |= {"_line": row.line, "_error": _describe(row.errors)}
                handle.write(exact.dumps(_storable(record)) + "\n")
        return
    with path.open("w", newline="", encoding="utf-8", errors="tierwise-bad-rows") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, "line", "error"])
        for row in bad:
            marker = row.raw.get("")
            error = _describe(row.errors)
            if isinstance(marker, _WrongWidth | _Unreadable) and marker.values is not None:
                values = (marker.values + [""] * len(header))[: len(header)]
            else:
                values = [str(row.raw.get(name, "")) for name in header]
            if isinstance(marker, _Unreadable) and marker.values is None:
                error += f"; the line was: {marker.text.rstrip()}"
            writer.writerow([*values, row.line, error])


def _storable(value: Any) -> Any:
    """What exact.dumps writes: JSON values as parsed; anything else as its text."""
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    if value is None or isinstance(value, str | bool | int | Decimal):
        return value
    return str(value)


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
