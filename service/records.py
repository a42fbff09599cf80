"""The canonical ingest fields of customers, orders and events, and how each value is checked.

One table of fields serves every way data arrives (CSV, JSON Lines, the API): a row is a mapping
of field name to raw value, and :func:`parse_row` turns it into a typed record or says which
field is wrong and why.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_FRACTION_DIGITS = 4  # numeric(18, 4)
MAX_AMOUNT = Decimal(10) ** 14
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class Kind(enum.StrEnum):
    customers = "customers"
    orders = "orders"
    events = "events"


class FieldError(ValueError):
    """A value that cannot be stored; the message says why in plain words."""


def _text(raw: Any) -> str:
    if isinstance(raw, bool | dict | list):
        raise FieldError(f"expected text, got {json.dumps(raw)}")
    value = str(raw).strip()
    if "\x00" in value:
        raise FieldError("contains a NUL character")
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


def _amount(raw: Any) -> Decimal:
    value = _decimal(raw)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_FRACTION_DIGITS:
        raise FieldError(f"{raw} has more than {MAX_FRACTION_DIGITS} decimal places")
    if abs(value) >= MAX_AMOUNT:
        raise FieldError(f"{raw} is too large")
    return value


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


def _json_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    text = _text(raw)
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError:
        raise FieldError(f"{text!r} is not valid JSON") from None
    if not isinstance(value, dict):
        raise FieldError('must be a JSON object, e.g. {"plan": "gold"}')
    return value


@dataclass(frozen=True)
class Field:
    name: str
    parse: Callable[[Any], Any]
    required: bool = False
    column: str | None = None
    """The staging column, when it differs from the field's name."""

    @property
    def stage_column(self) -> str:
        return self.column or self.name


FIELDS: Mapping[Kind, tuple[Field, ...]] = {
    Kind.customers: (
        Field("customer_id", _text, required=True, column="external_id"),
        Field("name", _text),
        Field("email", _text),
        Field("phone", _text),
        Field("age", _age),
        Field("gender", _text),
        Field("occupation", _text),
        Field("region", _text),
        Field("industry", _text),
        Field("company_size", _non_negative_integer),
        Field("registered_at", parse_timestamp),
        Field("attributes", _json_object),
    ),
    Kind.orders: (
        Field("order_id", _text, required=True, column="external_id"),
        Field("customer_id", _text, required=True, column="customer_external_id"),
        Field("ordered_at", parse_timestamp, required=True),
        Field("amount", _amount, required=True),
        Field("currency", _text),
        Field("category", _text),
        Field("channel", _text),
    ),
    Kind.events: (
        Field("event_id", _text, column="external_id"),
        Field("customer_id", _text, required=True, column="customer_external_id"),
        Field("type", _text, required=True),
        Field("occurred_at", parse_timestamp, required=True),
        Field("value", _decimal),
        Field("properties", _json_object),
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
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


def is_missing(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


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
            values.append(field.parse(raw))
        except FieldError as error:
            errors.append(RowError(line, field.name, str(error)))
    if kind is Kind.customers:
        _merge_attribute_columns(line, row, values, errors)
    elif kind is Kind.events and values[0] is None and not errors:
        values[0] = event_digest(values)
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
        extra = {key: _text(raw) if isinstance(raw, str) else raw for key, raw in extra.items()}
    except FieldError as error:
        errors.append(RowError(line, ATTRIBUTE_PREFIX + "*", str(error)))
        return
    values[-1] = {**(values[-1] or {}), **extra}


def event_digest(values: list[Any]) -> str:
    """A stable external id for an event that came without one: the digest of its content,
    so importing the same events twice stores them once."""
    _, customer, event_type, occurred_at, value, properties = values
    content = json.dumps(
        [customer, event_type, occurred_at.isoformat(), str(value), properties],
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()[:40]


def known_fields(kind: Kind) -> list[str]:
    return [field.name for field in FIELDS[kind]]


def check_tenant_id(tenant: str) -> str:
    if not TENANT_ID.fullmatch(tenant):
        raise FieldError(
            f"tenant {tenant!r} must be 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return tenant
