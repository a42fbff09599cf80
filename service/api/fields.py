"""`strawberry.field` as a typed decorator for resolvers.

With keyword arguments only, `strawberry.field(...)` is typed as returning `Any`, which mypy's
strict mode rejects as an untyped decorator; this wrapper keeps the resolver's own type (the
strawberry mypy plugin and the schema see the same field either way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import strawberry

from service.access.auth import Permission
from service.api import access

F = TypeVar("F", bound=Callable[..., Any])


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
