"""Limits against abusive queries, from the settings: depth, tokens, aliases, operations per
document (batched HTTP requests are refused by strawberry's default), introspection."""

from __future__ import annotations

from collections.abc import Callable

from graphql import GraphQLError, OperationDefinitionNode, ValidationContext, ValidationRule
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from service.api.errors import LIMIT_EXCEEDED
from service.config import Settings


def _max_operations_rule(limit: int) -> type[ValidationRule]:
    class MaxOperations(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            operations = [
                d for d in context.document.definitions if isinstance(d, OperationDefinitionNode)
            ]
            if len(operations) > limit:
                context.report_error(
                    GraphQLError(
                        f"Too many operations in one document: {len(operations)}, "
                        f"at most {limit} allowed.",
                        extensions={"code": LIMIT_EXCEEDED},
                    )
                )

    return MaxOperations


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories of the limiting extensions (strawberry builds fresh ones per request)."""
    operations = _max_operations_rule(settings.max_operations)
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        lambda: AddValidationRules([operations]),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    return extensions
