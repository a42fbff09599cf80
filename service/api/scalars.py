"""The `Decimal` scalar: every amount, revenue, average and share of the API, one form.

Strawberry's own `Decimal` writes ``str(value)`` (``"1110.4441000000000000"`` for an average
Postgres computed) and reads a JSON number through the float Python's json module made of it.
This one writes the plain form of service.db.exact (no exponent, no trailing zeros) and reads
strings, numbers of a request body (parsed as decimals: service.api.http) and literals of the
document digit for digit.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from graphql import FloatValueNode, IntValueNode, StringValueNode, ValueNode
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.types.scalar import ScalarDefinition

from service.db import exact

DESCRIPTION = (
    "An exact decimal number (amounts, revenue, averages, shares). Written as a string in one "
    'normalised form: no exponent and no trailing zeros ("1110.4441", "1200", "0.5", "0"), '
    "so clients read it with a decimal type, never a binary float. Read from a string "
    '("19.99") or a JSON number (19.99), which is taken digit for digit, never through a '
    "binary float."
)


def serialize(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise TypeError(f"Decimal cannot represent {value!r}")
    if isinstance(value, float):
        value = Decimal(repr(value))
    return exact.plain(Decimal(value))


def _parse(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise StrawberryInputCoercionError(f"Decimal cannot represent {text!r}") from None
    if not value.is_finite():
        raise StrawberryInputCoercionError(f"Decimal cannot represent {text!r}: not finite")
    return value


def parse_value(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise StrawberryInputCoercionError(f"Decimal cannot represent {value!r}")
    if isinstance(value, Decimal | int):
        return _parse(str(value))
    if isinstance(value, float):  # a client library that parsed the body itself
        return _parse(repr(value))
    if isinstance(value, str):
        return _parse(value)
    raise StrawberryInputCoercionError(f"Decimal cannot represent {value!r}")


def parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Decimal:
    if isinstance(node, FloatValueNode | IntValueNode | StringValueNode):
        return _parse(node.value)
    raise StrawberryInputCoercionError("Decimal takes a number or a string")


DecimalScalar = ScalarDefinition(
    name="Decimal",
    description=DESCRIPTION,
    specified_by_url=None,
    serialize=serialize,
    parse_value=parse_value,
    parse_literal=parse_literal,
    origin=Decimal,
)
