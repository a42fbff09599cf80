"""The schema, built from the settings (limits, introspection, federation).

`python -m service.api.schema > graphql/schema.graphql` exports the published contract;
tests/api/test_schema.py fails when the file and the code drift apart.
"""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from service.api.errors import ErrorPolicy, log_errors
from service.api.limits import limit_extensions
from service.api.mutations import Mutation
from service.api.queries import Query
from service.api.subscriptions import Subscription
from service.config import Settings


class TierwiseSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


def build_schema(settings: Settings) -> strawberry.Schema:
    extensions: list[Callable[[], SchemaExtension]] = [
        ErrorPolicy,
        *limit_extensions(settings),
    ]
    return TierwiseSchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions
    )


def sdl() -> str:
    """The contract in SDL, as `graphql/schema.graphql` holds it."""
    return build_schema(Settings()).as_str() + "\n"


if __name__ == "__main__":
    print(sdl(), end="")
