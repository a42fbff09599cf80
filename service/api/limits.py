"""Limits against abusive queries, from the settings: depth, tokens, aliases, operations per
document (batched HTTP requests are refused by strawberry's default), cost (`cost_refusal`,
within the tenant's budget), introspection; and the caches of parsed and validated documents
(frontends send the same few documents over and over: parsing and validating each anew was a
fifth of a small query's time). `service.api.policy.RequestPolicy` applies them."""

from __future__ import annotations

from functools import lru_cache

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    ValidationContext,
    ValidationRule,
    parse,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from service.api.cost import CostMemo, over_limit
from service.api.errors import LIMIT_EXCEEDED, ApiError
from service.config import Settings
from service.errors import UserError


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


@lru_cache(maxsize=256)
def _parsed(query: str, max_tokens: int | None) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


def parsed(query: str, max_tokens: int | None) -> DocumentNode | None:
    """Each distinct document parsed once; None for one that does not parse, which is left to
    strawberry's own parse, to report the error the usual way (with its code)."""
    try:
        return _parsed(query, max_tokens)
    except GraphQLError:
        return None


# By the schema and the (cached, so the same) document, each by identity, and the rules:
# hashing a document hashes its whole tree, every time (a tenth of a card's execution).
_VALIDATED: dict[
    tuple[int, int, tuple[type[ASTValidationRule], ...]],
    tuple[GraphQLSchema, DocumentNode, list[GraphQLError]],
] = {}
_MAX_VALIDATED = 256


def validated(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    """strawberry's validation of ``document``, once per schema, document and rules."""
    key = (id(schema), id(document), rules)
    found = _VALIDATED.get(key)
    if found is None or found[0] is not schema or found[1] is not document:
        if len(_VALIDATED) >= _MAX_VALIDATED:
            del _VALIDATED[next(iter(_VALIDATED))]
        found = (schema, document, validate_document(schema, document, rules))
        _VALIDATED[key] = found
    return found[2]


def page_size(settings: Settings, argument: str, value: int) -> int:
    """``value`` of a page-size argument such as `first`; `UserError` outside 0 to the cap."""
    if not 0 <= value <= settings.max_page_size:
        raise UserError(f"`{argument}` must be between 0 and {settings.max_page_size}")
    return value


def ingest_rows(settings: Settings, count: int) -> None:
    """LIMIT_EXCEEDED when one request carries more rows (or ids) than
    `Settings.max_ingest_rows`; bigger loads go through the command line."""
    if count > settings.max_ingest_rows:
        raise ApiError(
            LIMIT_EXCEEDED,
            f"{count} rows in one request, at most {settings.max_ingest_rows} allowed",
        )


def cost_refusal(
    context: ExecutionContext, settings: Settings, costs: CostMemo
) -> tuple[int, GraphQLError | None]:
    """The cost of the operation about to run (`service.api.cost`, remembered in ``costs``),
    and the LIMIT_EXCEEDED error (the cost in ``extensions.cost``) if it is over
    `Settings.max_query_cost`. (Within the limit, it runs within its tenant's budget:
    `TenantBudgets`.) Subscriptions cost little up front and are bounded per event, not
    here."""
    document = context.graphql_document
    if document is None:
        return 0, None
    cost = costs.cost(context.schema._schema, document, context.operation_name, context.variables)
    limit = settings.max_query_cost
    return cost, over_limit(cost, limit) if cost > limit else None


def validation_rules(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    """The limiting rules, made once (not per request, as strawberry's limiter extensions
    make them): the validation cache is keyed by the rules, so fresh ones would never hit it."""
    rules: list[type[ASTValidationRule]] = [
        max_depth_rule(settings.max_query_depth, None, None),
        max_aliases_rule(settings.max_aliases),
        _max_operations_rule(settings.max_operations),
    ]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return tuple(rules)
