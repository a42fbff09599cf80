"""The schema: the roots assembled from each feature's fields, built from the settings
(limits, introspection, federation).

`python -m service.api.schema > graphql/schema.graphql` exports the published contract (the
plain schema); tests/api/test_contract.py fails when the file and the code drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.federation.schema import FederationAny
from strawberry.federation.schema_directives import Key
from strawberry.federation.types import FieldSet
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext
from strawberry.types import Info as StrawberryInfo
from strawberry.types.base import get_object_definition

from service.api.audit import AuditQuery
from service.api.catalog import CatalogQuery
from service.api.customers import Customer, CustomerQuery
from service.api.deletion import DeletionMutation
from service.api.errors import BAD_INPUT, ApiError, log_errors
from service.api.ingest import IngestMutation
from service.api.keys import KeyMutation, KeyQuery
from service.api.plans import PlannedExecutor
from service.api.policy import request_policy
from service.api.predictions import PredictionMutation, PredictionQuery
from service.api.scalars import DecimalScalar
from service.api.schemes import SchemeMutation, SchemeQuery
from service.api.segments import SegmentQuery
from service.api.strategies import StrategyMutation, StrategyQuery
from service.api.tier_changes import TierChangeSubscription
from service.api.webhooks import WebhookMutation, WebhookQuery
from service.config import Settings

# Each root is the union of the features' fields, as `strawberry.tools.merge_types` makes it
# (a subclass of them all, fields in this order), but with the root's own description, which
# merge_types cannot give.


@strawberry.type(description="Reading customers, tiers, segments, strategies and rules.")
class Query(
    WebhookQuery,
    AuditQuery,
    KeyQuery,
    CustomerQuery,
    SegmentQuery,
    SchemeQuery,
    StrategyQuery,
    CatalogQuery,
    PredictionQuery,
):
    pass


@strawberry.type(description="Writing data, rules and strategies.")
class Mutation(
    WebhookMutation,
    KeyMutation,
    IngestMutation,
    DeletionMutation,
    SchemeMutation,
    StrategyMutation,
    PredictionMutation,
):
    pass


@strawberry.type(description="Live updates, over the graphql-transport-ws protocol.")
class Subscription(TierChangeSubscription):
    pass


# graphql-core's hint at names close to a wrong one ("Did you mean 'apiKeys'?"): with
# introspection off, it would tell the schema all the same, name by name.
_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)


def _processed(schema: strawberry.Schema, errors: list[GraphQLError]) -> None:
    log_errors(errors)
    if schema.config.disable_field_suggestions:
        for error in errors:
            error.message = _SUGGESTION.sub("", error.message)


class TierwiseSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        _processed(self, errors)


class FederatedSchema(strawberry.federation.Schema):
    """The same schema as an Apollo Federation 2 subgraph: `_service` and `_entities`."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        _processed(self, errors)

    def entities_resolver(
        self, info: StrawberryInfo, representations: list[FederationAny]
    ) -> list[FederationAny]:
        """The entities a gateway asks for; a representation of no entity of this subgraph
        (`Customer` with its `id`) is BAD_INPUT, naming it (it failed as INTERNAL)."""
        for index, representation in enumerate(representations):
            if not (
                isinstance(representation, dict)
                and representation.get("__typename") == "Customer"
                and isinstance(representation.get("id"), str)
            ):
                raise ApiError(
                    BAD_INPUT,
                    f"representations[{index}] is not a Customer with an id (the only entity "
                    "of this subgraph): " + repr(representation)[:100],
                )
        return super().entities_resolver(info, representations)


def _entity_keys(enabled: bool) -> None:
    """Make `Customer` an entity keyed by `id` (or not).

    Types are module-level and the key is a directive on the type's definition, so this is
    per process, which suits the setting: a process serves one configuration. (Decorating
    `Customer` as an entity always would print `@key` into the plain schema, where no
    directive of that name is defined.)
    """
    definition = get_object_definition(Customer, strict=True)
    definition.directives = [Key(fields=FieldSet("id"))] if enabled else []


def build_schema(settings: Settings) -> strawberry.Schema:
    # One extension (see service/api/policy.py): each of strawberry's hooks per extension
    # costs a generator per operation.
    extensions: list[Callable[[], SchemaExtension]] = [request_policy(settings)]
    _entity_keys(settings.federation)
    schema = FederatedSchema if settings.federation else TierwiseSchema
    return schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not settings.introspection),
        scalar_overrides={Decimal: DecimalScalar},
        # A query's plain fields completed by plans made once per document (plans.py).
        execution_context_class=PlannedExecutor,
    )


def sdl() -> str:
    """The contract in SDL, as `graphql/schema.graphql` holds it."""
    return build_schema(Settings(federation=False)).as_str() + "\n"


if __name__ == "__main__":
    print(sdl(), end="")
