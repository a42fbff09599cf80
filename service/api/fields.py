"""`strawberry.field` as a typed decorator for resolvers.

With keyword arguments only, `strawberry.field(...)` is typed as returning `Any`, which mypy's
strict mode rejects as an untyped decorator; this wrapper keeps the resolver's own type (the
strawberry mypy plugin and the schema see the same field either way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import strawberry

F = TypeVar("F", bound=Callable[..., Any])


def resolver(description: str) -> Callable[[F], F]:
    return cast(Callable[[F], F], strawberry.field(description=description))


def subscription(description: str) -> Callable[[F], F]:
    return cast(Callable[[F], F], strawberry.subscription(description=description))


def arg(description: str) -> Any:
    """An argument's description, as `Annotated[type, arg("...")]`."""
    return strawberry.argument(description=description)
