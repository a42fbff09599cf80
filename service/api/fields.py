"""Declaring fields and reading their arguments.

`resolver` is `strawberry.field` as a typed decorator: with keyword arguments only,
`strawberry.field(...)` is typed as returning `Any`, which mypy's strict mode rejects as an
untyped decorator; the wrapper keeps the resolver's own type (the strawberry mypy plugin and the
schema see the same field either way). `parse_id` and `known_id` are the one reading of the
IDs this API gives out for rows (strategies, webhooks, deliveries, audit entries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import strawberry

from service.access.auth import Permission
from service.api import access
from service.errors import NotFound

F = TypeVar("F", bound=Callable[..., Any])

# Row ids are Postgres bigint identities (from 1); past the largest bigint no row can be.
_MAX_ROW_ID = 2**63 - 1


def resolver(description: str, *, needs: Permission | None = None) -> Callable[[F], F]:
    """A field; a root field names the permission it ``needs`` (checked before it runs)."""
    extensions = access.needs(needs) if needs is not None else None
    return cast(Callable[[F], F], strawberry.field(description=description, extensions=extensions))


def subscription(description: str, *, needs: Permission) -> Callable[[F], F]:
    return cast(
        Callable[[F], F],
        strawberry.subscription(description=description, extensions=access.needs(needs)),
    )


def arg(description: str) -> Any:
    """An argument's description, as `Annotated[type, arg("...")]`."""
    return strawberry.argument(description=description)


def parse_id(value: str) -> int | None:
    """The row id an ID argument holds, or None when it holds none (then no row has that ID):
    only the decimal digits of a row id are one, so neither ``" 1"``, ``"1_0"`` nor a number
    past bigint reaches the database."""
    if not (value.isascii() and value.isdecimal()):
        return None
    number = int(value)
    return number if number <= _MAX_ROW_ID else None


def known_id(value: str, what: str) -> int:
    """`parse_id`, raising `NotFound` ("no {what} {value!r}") for an ID that holds no row id."""
    number = parse_id(value)
    if number is None:
        raise NotFound(f"no {what} {value!r}")
    return number
