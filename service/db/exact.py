"""JSON without binary floats: numbers are read as Decimal and written digit for digit.

Python's json module reads ``1234567890123.4567`` as a float (``...4568``) unless told
otherwise, and writes a Decimal only through float. Everything Tierwise reads or writes as
JSON (imports, jsonb it stores, JSON reports) goes through here instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


MAX_DEPTH = 100


def loads_stored(text: str | bytes) -> Any:
    """JSON Tierwise stored (jsonb, read back): numbers with a point or an exponent as
    Decimal, whole ones as int; checked on the way in, so not again."""
    return json.loads(text, parse_float=Decimal)


class StoredObject(Mapping[str, Any]):
    """A JSON object Tierwise stored, kept as its text until something reads it (then
    `loads_stored`, once): a customer card's strategies bring their parameters along, which
    few callers ask for."""

    __slots__ = ("_text", "_value")

    def __init__(self, text: str | bytes) -> None:
        self._text = text
        self._value: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._value is None:
            value: dict[str, Any] = loads_stored(self._text)
            self._value = value
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


def loads(text: str | bytes) -> Any:
    """JSON text as Python values; every number is a Decimal (``1`` too, so a 5,000-digit
    integer is no error of Python's int conversion). NaN and Infinity, and values nested more
    than MAX_DEPTH deep, are refused with ValueError, as any invalid JSON is."""
    try:
        value = json.loads(
            text, parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant
        )
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    deepest, level = 0, [value]
    while level:
        deepest += 1
        if deepest > MAX_DEPTH:
            return deepest
        level = [
            item
            for container in level
            if isinstance(container, dict | list)
            for item in (container.values() if isinstance(container, dict) else container)
        ]
    return deepest


def dumps(value: Any, *, plain_numbers: bool = False) -> str:
    """JSON text of ``value`` (dicts, lists, str, bool, None, int, Decimal) with every
    Decimal written exactly, as a JSON number: as it is (``1.10``, ``1E+3``; what jsonb keeps)
    or, with ``plain_numbers`` (reports), in its `plain` form. Non-finite numbers are refused
    (ValueError)."""
    parts: list[str] = []
    _write(value, parts, plain_numbers)
    return "".join(parts)


def number_text(value: Decimal | int) -> str:
    """A finite number as exact JSON number text."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite number")
        return str(value)
    return str(int(value))


def plain(value: Decimal) -> str:
    """A decimal's one written form: trailing zeros dropped, never an exponent (``1110.4441``,
    not ``1110.4441000000000000``; ``1200``, not ``1.2E+3``; ``0``, not ``0E-4``)."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text


def _write(value: Any, parts: list[str], plain_numbers: bool) -> None:
    if isinstance(value, str):
        parts.append(json.dumps(value, ensure_ascii=False))
    elif value is None or isinstance(value, bool):
        parts.append(json.dumps(value))
    elif isinstance(value, Decimal) and plain_numbers:
        parts.append(plain(value))
    elif isinstance(value, int | Decimal):
        parts.append(number_text(value))
    elif isinstance(value, float) and math.isfinite(value):
        # A float arrives only from a caller that parsed JSON its own way; repr is the
        # shortest text that reads back as the same float (the digits it still has).
        parts.append(repr(value))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                parts.append(", ")
            parts.append(json.dumps(str(key), ensure_ascii=False))
            parts.append(": ")
            _write(item, parts, plain_numbers)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(", ")
            _write(item, parts, plain_numbers)
        parts.append("]")
    else:
        raise ValueError(f"{value!r} is not JSON")
