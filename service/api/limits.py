"""Limits against abusive queries, from the settings: depth, tokens, aliases, operations per
document (batched HTTP requests are refused by strawberry's default), cost (`CostLimit`),
introspection; and the caches of parsed and validated documents (frontends send the same few
documents over and over: parsing and validating each anew was a fifth of a small query's
time)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from functools import lru_cache

from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    ValidationContext,
    ValidationRule,
    parse,
)
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.types.graphql import OperationType

from service.api.cost import TenantBudgets, operation_cost, over_limit
from service.api.errors import LIMIT_EXCEEDED, TIMEOUT, ApiError
from service.api.text import StorableText
from service.config import Settings
from service.errors import TimedOut, UserError


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


class ParseCache(SchemaExtension):
    """Each distinct document parsed once. Unlike strawberry's ParserCache, a document that
    does not parse is left to strawberry's own parse, which reports the error the usual way
    (through `ErrorPolicy`, with its code)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:
            with contextlib.suppress(GraphQLError):
                context.graphql_document = _parsed(
                    context.query, context.parse_options.get("max_tokens")
                )
        yield


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


class CostLimit(SchemaExtension):
    """Refuses a query or mutation whose `service.api.cost` is over the limit before it runs
    (LIMIT_EXCEEDED, the cost in ``extensions.cost``), and runs the others within their
    tenant's budget (`TenantBudgets`). Subscriptions cost little up front and are bounded per
    event, not here."""

    def __init__(self, *, settings: Settings, budgets: TenantBudgets) -> None:
        super().__init__()
        self.settings = settings
        self.budgets = budgets

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is None or context.operation_type is OperationType.SUBSCRIPTION:
            yield
            return
        cost = operation_cost(
            context.schema._schema,
            document,
            self.settings,
            operation_name=context.operation_name,
            variables=context.variables,
        )
        limit = self.settings.max_query_cost
        if cost > limit:
            context.result = ExecutionResult(data=None, errors=[over_limit(cost, limit)])
            yield
            return
        caller = getattr(context.context, "principal", None)
        if caller is None:  # not authenticated: refused when a field asks for the caller
            yield
            return
        try:
            async with self.budgets.held(caller.tenant, cost, self.settings.statement_timeout):
                yield
        except TimedOut as error:
            timeout = GraphQLError(str(error), extensions={"code": TIMEOUT, "cost": cost})
            context.result = ExecutionResult(data=None, errors=[timeout])


def limit_extensions(settings: Settings) -> list[Callable[[], SchemaExtension]]:
    """Factories of the limiting extensions (strawberry builds fresh ones per request)."""
    # The rules are made once, not per request (as strawberry's limiter extensions make them):
    # the validation cache is keyed by the rules, so fresh ones would never hit it.
    rules: list[type[ASTValidationRule]] = [
        max_depth_rule(settings.max_query_depth, None, None),
        max_aliases_rule(settings.max_aliases),
        _max_operations_rule(settings.max_operations),
    ]
    budgets = TenantBudgets(settings.tenant_cost_budget)
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: AddValidationRules(rules),
        ParseCache,
        ValidationCache,
        lambda: CostLimit(settings=settings, budgets=budgets),
        StorableText,
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    return extensions
