"""The canonical ingest fields of customers, orders and events, and how each value is checked.

One table of fields serves every way data arrives (CSV, JSON Lines, the API): a row is a mapping
of field name to raw value, and :func:`parse_row` turns it into a typed record or says which
field is wrong and why. Each value type also has a SQL form for the bulk path, which casts raw
CSV text inside Postgres: it accepts a strict subset of what the Python parser accepts, with the
same values, so any row it doubts falls back to the Python parser and its exact error messages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from dsl.catalog import ORDER_STATUSES
from service.data.kinds import Kind
from service.db import exact

MAX_FRACTION_DIGITS = 4  # numeric(18, 4)
MAX_AMOUNT = Decimal(10) ** 14
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class FieldError(ValueError):
    """A value that cannot be stored; the message says why in plain words."""


# What both Python and Postgres (btrim) trim: ASCII whitespace only.
WHITESPACE = " \t\n\r\f\v"


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""What Postgres text and jsonb cannot hold: NUL, and lone surrogates (no UTF-8 encodes them;
JSON's ``\\ud800`` escapes and bytes read as surrogateescape make them)."""
NEITHER = "text may hold neither NUL characters nor unpaired surrogates"
"""What is said of a value `UNSTORABLE` matches, after where it is."""


def unstorable_in(value: Any, path: str) -> str | None:
    """Where in ``value`` (text, or JSON: keys and strings at any depth) there is unstorable
    text, as ``path`` extended (``attributes.plan``, ``tags[2]``); None if nowhere."""
    if isinstance(value, str):
        return path if UNSTORABLE.search(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            inside = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and UNSTORABLE.search(key):
                return inside
            found = unstorable_in(item, inside)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_in(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def unstorable_reason(text: str, *, read_as_bytes: bool = False) -> str:
    """Why ``text`` (which `UNSTORABLE` matches) cannot be stored, in plain words; with
    ``read_as_bytes`` (a CSV file's text, where a surrogate can only be a byte that was not
    UTF-8, read with surrogateescape) the byte is named."""
    found = UNSTORABLE.search(text)
    assert found is not None
    character = found.group()
    if character == "\x00":
        return "contains a NUL character"
    if read_as_bytes and "\udc80" <= character <= "\udcff":
        return f"holds the byte 0x{ord(character) - 0xDC00:02x}, which is not UTF-8 text"
    return f"contains {ascii(character)[1:-1]}, which is not UTF-8 text (an unpaired surrogate)"


def _text(raw: Any) -> str:
    if isinstance(raw, bool | dict | list):
        raise FieldError(f"expected text, got {exact.dumps(raw)}")
    value = str(raw).strip(WHITESPACE)
    if UNSTORABLE.search(value):
        raise FieldError(unstorable_reason(value))
    return value


def _label(raw: Any) -> str:
    # Text that rules compare with text written in them, which the rule language reads in NFC
    # (docs/rules.md): stored in NFC too, so `region = "München"` matches however it was typed.
    return unicodedata.normalize("NFC", _text(raw))


def _nfc_json(value: Any) -> Any:
    """A JSON value with its keys and strings in NFC, at every depth."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {_nfc_json(k): _nfc_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nfc_json(v) for v in value]
    return value


def _integer(raw: Any) -> int:
    if isinstance(raw, bool):
        raise FieldError(f"{raw!r} is not a whole number")
    if isinstance(raw, int):
        return raw
    text = _text(raw)
    try:
        return int(text)
    except ValueError:
        raise FieldError(f"{text!r} is not a whole number") from None


def _non_negative_integer(raw: Any) -> int:
    value = _integer(raw)
    if value < 0:
        raise FieldError(f"{value} is negative")
    return value


def _age(raw: Any) -> int:
    value = _non_negative_integer(raw)
    if value > 150:
        raise FieldError(f"{value} is not a plausible age")
    return value


def _decimal(raw: Any) -> Decimal:
    if isinstance(raw, bool):
        raise FieldError(f"{raw!r} is not a number")
    if isinstance(raw, Decimal | int):
        value = Decimal(raw)
    else:
        text = _text(raw)
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise FieldError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise FieldError(f"{raw!r} is not a finite number")
    return value


_AMOUNT_STEP = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)


def _shown(raw: Any, limit: int = 40) -> str:
    """A value as an error message shows it: its first characters when it is long."""
    text = str(raw)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _amount(raw: Any) -> Decimal:
    """An amount stored exactly in numeric(18, 4): more decimal places are fine when they are
    zeros (19.990000 is 19.99), not when they would be rounded away (19.99001)."""
    value = _decimal(raw)
    if abs(value) >= MAX_AMOUNT:
        raise FieldError(f"{_shown(raw)} is too large")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_FRACTION_DIGITS:
        fitted = value.quantize(_AMOUNT_STEP)
        if fitted != value:
            raise FieldError(
                f"{_shown(raw)} has more than {MAX_FRACTION_DIGITS} decimal places "
                "that are not zero"
            )
        return fitted
    return value


def _status(raw: Any) -> str:
    value = _text(raw).lower()
    if value not in ORDER_STATUSES:
        known = " or ".join(ORDER_STATUSES)
        hint = ""
        if value in ("refunded", "returned"):
            hint = (
                "; a refund is a row of its own, with a negative amount and refund_of naming "
                "the order it refunds"
            )
        raise FieldError(f"{_text(raw)!r} is not an order status ({known}){hint}")
    return value


_CURRENCY = re.compile(r"[A-Za-z]{3}")


def _currency(raw: Any) -> str:
    """An ISO 4217 code: three letters, stored in capitals (`usd` is USD). Whether it names a
    real currency is for the exchange rates to say: an order in a code without a rate is
    refused (service/data/rates.py)."""
    value = _text(raw)
    if not _CURRENCY.fullmatch(value):
        raise FieldError(
            f"{_shown(value)!r} is not an ISO 4217 currency code (three letters, e.g. EUR)"
        )
    return value.upper()


MAX_RATE_DIGITS = 12  # fractional digits of an exchange rate


def _rate(raw: Any) -> Decimal:
    """An exchange rate: a positive exact decimal of at most MAX_RATE_DIGITS decimal places."""
    value = _decimal(raw)
    if value <= 0:
        raise FieldError(f"{_shown(raw)} is not a positive rate")
    if value >= MAX_AMOUNT:
        raise FieldError(f"{_shown(raw)} is too large")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_RATE_DIGITS:
        raise FieldError(
            f"{_shown(raw)} has more than {MAX_RATE_DIGITS} decimal places that are not zero"
        )
    return value


def _date(raw: Any) -> date:
    text = _text(raw)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FieldError(f"{text!r} is not an ISO 8601 date (e.g. 2026-03-01)") from None


def parse_timestamp(raw: Any) -> datetime:
    """ISO 8601; a date alone is midnight UTC and a time without an offset is UTC."""
    text = _text(raw)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(
            f"{text!r} is not an ISO 8601 date or timestamp (e.g. 2026-03-01 or "
            "2026-03-01T14:30:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _attributes(raw: Any) -> dict[str, Any]:
    return dict(_nfc_json(_json_object(raw)))


def _json_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        value = raw
    else:
        text = _text(raw)
        try:
            value = exact.loads(text)
        except ValueError:
            raise FieldError(f"{text!r} is not valid JSON") from None
        if not isinstance(value, dict):
            raise FieldError('must be a JSON object, e.g. {"plan": "gold"}')
    where = unstorable_in(value, "")
    if where is not None:
        raise FieldError(f"{where!r} in this JSON object: {NEITHER}")
    return value


_DIGITS = "0123456789"


def _sql_timestamp_shapes() -> str:
    """The ISO 8601 layouts the bulk path casts in SQL (digits shown as 9); others go to Python."""
    times = ["", *(sep + t for sep in "T " for t in ("99:99", "99:99:99"))]
    times += [f"{sep}99:99:99.{'9' * n}" for sep in "T " for n in range(1, 7)]
    offsets = ["", "Z", "+99", "-99", "+9999", "-9999", "+99:99", "-99:99"]
    shapes = ["9999-99-99" + t + (o if t else "") for t in times for o in offsets]
    return ", ".join(f"'{shape}'" for shape in dict.fromkeys(shapes))


_SQL_TIMESTAMP_SHAPES = _sql_timestamp_shapes()


@dataclass(frozen=True)
class ValueType:
    """How one type of value is parsed in Python and, for the bulk path, cast in SQL."""

    parse: Callable[[Any], Any]
    stage_type: str
    sql_check: str
    """Condition on the trimmed raw text ``{v}`` and on ``{x}``, what ``sql_value`` made of it,
    under which ``{x}`` is exact. The bulk path computes ``{x}`` once per value, before the
    check: a cast that fails on a value the check would refuse sends the file to Python all
    the same."""
    sql_value: str = "{v}"
    sql_refuses_padding: bool = False
    """Whether ``sql_check`` refuses any value that ends in whitespace: the bulk path then
    looks only at a value's first character before trimming it (a value that ends in
    whitespace goes to the Python path, which trims it)."""


TEXT = ValueType(_text, "text", "true")
# Text compared by rules, stored in NFC (Postgres' normalize() needs a UTF8 database; on another
# the bulk path fails and the rows take the Python path: `normalize('', NFC)` is folded when the
# statement is planned, so it fails there even when every value is ASCII). ASCII text is in NFC
# already, and normalize() costs five times the length test.
LABEL = ValueType(
    _label,
    "text",
    "true",
    "CASE WHEN octet_length({v}) = length({v}) AND normalize('', NFC) = '' THEN {v}"
    " ELSE normalize({v}, NFC) END",
)
# The layout nearly every export writes (2026-03-01T14:30:00Z) is checked by the round trip
# through Postgres' own reading (the text is that instant, written back the same): a fifth of
# the cost of the general check below, which takes the other layouts.
TIMESTAMP = ValueType(
    parse_timestamp,
    "timestamptz",
    "CASE WHEN {v} LIKE '____-__-__T__:__:__Z'"
    ' THEN to_char({x}, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\') = {v}'
    f" ELSE translate({{v}}, '{_DIGITS}', '9999999999') IN ({_SQL_TIMESTAMP_SHAPES})"
    " AND (length({v}) = 10 OR (substr({v}, 12, 2) < '24' AND substr({v}, 15, 2) < '60'"
    " AND (substr({v}, 17, 1) <> ':' OR substr({v}, 18, 2) < '60'))) END",
    # The session time zone is UTC during ingest: a time without an offset is UTC.
    "({v})::timestamptz",
    sql_refuses_padding=True,
)
_PLAIN_DECIMAL = f"translate({{v}}, '{_DIGITS}', '') IN ('', '.', '-', '-.', '+', '+.')"
DECIMAL = ValueType(_decimal, "numeric", _PLAIN_DECIMAL, "({v})::numeric", True)
AMOUNT = ValueType(
    _amount,
    "numeric",
    # Written as Postgres writes the number back (no exponent: NaN and Infinity fail below),
    # or plain digits with a sign and a point.
    f"(({{x}})::text = {{v}} OR {_PLAIN_DECIMAL}) AND length({{v}}) <= 24"
    f" AND min_scale({{x}}) <= {MAX_FRACTION_DIGITS} AND abs({{x}}) < {MAX_AMOUNT}",
    "({v})::numeric",
    sql_refuses_padding=True,
)
CURRENCY = ValueType(_currency, "text", "{v} ~ '^[A-Za-z]{{3}}$'", "upper({v})", True)
RATE = ValueType(_rate, "numeric", "false")  # rates take the Python path: files are small
DATE = ValueType(_date, "date", "false")
STATUS = ValueType(
    _status,
    "text",
    "{x} IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")",
    "lower({v})",
    sql_refuses_padding=True,
)
_PLAIN_INTEGER = f"translate({{v}}, '{_DIGITS}', '') = '' AND length({{v}}) <= 9"
COUNT = ValueType(_non_negative_integer, "integer", _PLAIN_INTEGER, "({v})::integer", True)
AGE = ValueType(_age, "integer", f"{_PLAIN_INTEGER} AND {{x}} <= 150", "({v})::integer", True)
# Attributes are compared by rules (keys and values in NFC); event properties are not.
JSON_OBJECT = ValueType(_json_object, "jsonb", "jsonb_typeof({x}) = 'object'", "({v})::jsonb")
ATTRIBUTES = ValueType(
    _attributes,
    "jsonb",
    "jsonb_typeof({x}) = 'object'",
    # jsonb's text form writes characters, not \u escapes, so normalising it normalises them.
    "normalize(({v})::jsonb::text, NFC)::jsonb",
)


@dataclass(frozen=True)
class Field:
    name: str
    type: ValueType
    required: bool = False
    column: str | None = None
    """The staging column, when it differs from the field's name."""

    @property
    def stage_column(self) -> str:
        return self.column or self.name


FIELDS: Mapping[Kind, tuple[Field, ...]] = {
    Kind.customers: (
        Field("customer_id", TEXT, required=True, column="external_id"),
        Field("name", TEXT),
        Field("email", TEXT),
        Field("phone", TEXT),
        Field("age", AGE),
        Field("gender", LABEL),
        Field("occupation", LABEL),
        Field("region", LABEL),
        Field("industry", LABEL),
        Field("company_size", COUNT),
        Field("registered_at", TIMESTAMP),
        Field("attributes", ATTRIBUTES),
    ),
    Kind.orders: (
        Field("order_id", TEXT, required=True, column="external_id"),
        Field("customer_id", TEXT, required=True, column="customer_external_id"),
        Field("ordered_at", TIMESTAMP, required=True),
        Field("amount", AMOUNT, required=True),
        Field("currency", CURRENCY),
        Field("category", LABEL),
        Field("channel", LABEL),
        Field("status", STATUS),
        Field("refund_of", TEXT),
    ),
    Kind.events: (
        Field("event_id", TEXT, column="external_id"),
        Field("customer_id", TEXT, required=True, column="customer_external_id"),
        Field("type", LABEL, required=True),
        Field("occurred_at", TIMESTAMP, required=True),
        Field("value", DECIMAL),
        Field("properties", JSON_OBJECT),
    ),
    # Exchange rates (service/data/rates.py): one unit of `currency` is worth `rate` units of
    # the tenant's reporting currency from `date` on.
    Kind.rates: (
        Field("currency", CURRENCY, required=True),
        Field("date", DATE, required=True, column="valid_from"),
        Field("rate", RATE, required=True),
    ),
}

# Customer files may also carry one attribute per column: `attributes.plan` -> {"plan": ...}.
ATTRIBUTE_PREFIX = "attributes."


@dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    message: str

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}"
        # A field name from a header may hold any character: one that is not printable
        # (a line break) is shown quoted, so the message keeps one line per error.
        field = self.field if self.field is None or self.field.isprintable() else repr(self.field)
        return f"{where}: {field}: {self.message}" if field else f"{where}: {self.message}"


def is_missing(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip(WHITESPACE) == "")


def parse_row(kind: Kind, line: int, row: Mapping[str, Any]) -> tuple[Any, ...] | list[RowError]:
    """The staging record for ``row`` (values in ``FIELDS[kind]`` order), or what is wrong."""
    values: list[Any] = []
    errors: list[RowError] = []
    for field in FIELDS[kind]:
        raw = row.get(field.name)
        if is_missing(raw):
            if field.required:
                errors.append(RowError(line, field.name, "is required but missing"))
            values.append(None)
            continue
        try:
            values.append(field.type.parse(raw))
        except FieldError as error:
            errors.append(RowError(line, field.name, str(error)))
            values.append(None)  # keeps values in field order for the checks after
    if kind is Kind.customers:
        _merge_attribute_columns(line, row, values, errors)
    return errors or tuple(values)


def _merge_attribute_columns(
    line: int, row: Mapping[str, Any], values: list[Any], errors: list[RowError]
) -> None:
    extra = {
        name.removeprefix(ATTRIBUTE_PREFIX): raw
        for name, raw in row.items()
        if name.startswith(ATTRIBUTE_PREFIX) and not is_missing(raw)
    }
    if not extra:
        return
    try:
        for key, raw in extra.items():
            if UNSTORABLE.search(key):
                raise FieldError(f"the attribute name {key!r} {unstorable_reason(key)}")
            where = None if isinstance(raw, str) else unstorable_in(raw, key)
            if where is not None:  # a JSON Lines object or list (a string is checked below)
                raise FieldError(f"{where!r}: {NEITHER}")
        extra = {
            unicodedata.normalize("NFC", key): (
                attribute_cell(raw) if isinstance(raw, str) else _nfc_json(raw)
            )
            for key, raw in extra.items()
        }
    except FieldError as error:
        errors.append(RowError(line, ATTRIBUTE_PREFIX + "*", str(error)))
        return
    values[-1] = {**(values[-1] or {}), **extra}


# A JSON number as CSV may hold one: no leading zeros (so `01234` stays text), no exponent.
_CELL_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def attribute_cell(raw: str) -> str | bool | Decimal:
    """The JSON value of one `attributes.KEY` cell of a CSV file, typed as rules compare it:
    `true` and `false` are booleans, a plain number (``15000``, ``-2.5``; no leading zeros,
    sign `+` or exponent) is a number, anything else is text (``01234``, ``1e3``, ``yes``).
    Text that looks like a number is kept as text through the `attributes` JSON column."""
    value = _label(raw)
    if value in ("true", "false"):
        return value == "true"
    if _CELL_NUMBER.fullmatch(value):
        return Decimal(value)
    return value


def known_fields(kind: Kind) -> list[str]:
    return [field.name for field in FIELDS[kind]]


def id_field(kind: Kind) -> str:
    """The field holding a ``kind`` row's id in the caller's systems (its external id)."""
    return next(field.name for field in FIELDS[kind] if field.stage_column == "external_id")


def check_tenant_id(tenant: str) -> str:
    if not TENANT_ID.fullmatch(tenant):
        raise FieldError(
            f"tenant {tenant!r} must be 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return tenant
