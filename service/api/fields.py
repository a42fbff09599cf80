"""Declaring fields and reading their arguments.

`resolver` is `strawberry.field` as a typed decorator: with keyword arguments only,
`strawberry.field(...)` is typed as returning `Any`, which mypy's strict mode rejects as an
untyped decorator; the wrapper keeps the resolver's own type (the strawberry mypy plugin and the
schema see the same field either way). `shown_id`, `row_id` and `known_id` are the one writing and
reading of the IDs this API gives out for rows (strategies, webhooks, deliveries, runs, audit
entries): opaque tokens of `service.db.ids`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import strawberry

from service.access.auth import Permission
from service.api import access
from service.db.ids import Ids, MalformedId, RowKind
from service.errors import NotFound, UserError

F = TypeVar("F", bound=Callable[..., Any])


def resolver(
    description: str, *, needs: Permission | None = None, graphql_type: Any | None = None
) -> Callable[[F], F]:
    """A field; a root field names the permission it ``needs`` (checked before it runs).
    ``graphql_type``: the field's type, where the resolver's annotation is not it (a resolver
    that returns either its value or an awaitable of it)."""
    extensions = access.needs(needs) if needs is not None else None
    return cast(
        Callable[[F], F],
        strawberry.field(description=description, extensions=extensions, graphql_type=graphql_type),
    )


def subscription(description: str, *, needs: Permission) -> Callable[[F], F]:
    return cast(
        Callable[[F], F],
        strawberry.subscription(description=description, extensions=access.needs(needs)),
    )


def arg(description: str) -> Any:
    """An argument's description, as `Annotated[type, arg("...")]`."""
    return strawberry.argument(description=description)


_WHAT = {
    RowKind.strategy: "strategy",
    RowKind.webhook: "webhook",
    RowKind.delivery: "webhook delivery",
    RowKind.run: "evaluation run",
    RowKind.audit_entry: "audit entry",
}


def shown_id(ids: Ids, kind: RowKind, number: int) -> strawberry.ID:
    """The ID a row of ``kind`` with internal id ``number`` is shown as (`service.db.ids`)."""
    return strawberry.ID(ids.encode(kind, number))


def row_id(ids: Ids, kind: RowKind, value: str, argument: str) -> int | None:
    """The internal id of the caller's row of ``kind`` an ID argument names, or None when it
    names none (another tenant's or another kind's id, or a made-up one); `UserError` naming
    ``argument`` when it is not of an id's shape (a number from before ids were opaque, too)."""
    try:
        return ids.decode(kind, value)
    except MalformedId:
        raise UserError(
            f"`{argument}` is not a {_WHAT[kind]} id this API gave out: {value[:100]!r}"
        ) from None


def known_id(ids: Ids, kind: RowKind, value: str, argument: str) -> int:
    """`row_id`, raising `NotFound` ("no {kind} {value!r}") for an ID that names no row."""
    number = row_id(ids, kind, value, argument)
    if number is None:
        raise NotFound(f"no {_WHAT[kind]} {value!r} (`{argument}`)")
    return number
