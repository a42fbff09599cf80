"""The API's one schema extension: every operation's bookkeeping, in the order it was done by
the seven extensions it replaces (each concern stays in its own module, as functions).

strawberry makes every extension anew for every operation and runs each hook of each through
a generator of its own: nine extensions cost more per customer card than its three SQL
statements. `RequestPolicy` does, per operation:

- before parsing: the token limit, the validation rules (depth, aliases, operations per
  document, no introspection when it is off) (`service.api.limits`), the start of the
  operation's metrics (`service.api.observe`);
- parsing and validating each distinct document once (`service.api.limits`' caches), also
  before parsing (one hook fewer per operation for each);
- before executing: the shared connection for a query over HTTP (`service.api.context`), the
  cost limit and the tenant's budget (`service.api.cost`), text the database cannot store
  (`service.api.text`);
- after: the errors' codes and masking (`service.api.errors`), then the operation's metrics;
  each result of a subscription's stream gets the errors' codes and masking too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

from graphql import ASTValidationRule, ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from service.api.context import share_reads
from service.api.cost import CostMemo, TenantBudgets
from service.api.errors import TIMEOUT, publish
from service.api.limits import cost_refusal, parsed, validated, validation_rules
from service.api.observe import record_operation
from service.api.text import text_refusal
from service.config import Settings
from service.errors import TimedOut


class RequestPolicy(SchemaExtension):
    def __init__(
        self,
        *,
        settings: Settings,
        rules: tuple[type[ASTValidationRule], ...],
        budgets: TenantBudgets,
        costs: CostMemo,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.rules = rules
        self.budgets = budgets
        self.costs = costs

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        context = self.execution_context
        context.parse_options["max_tokens"] = self.settings.max_query_tokens
        context.validation_rules = context.validation_rules + self.rules
        # Parsed and validated here, from the caches, rather than in the parsing and validation
        # hooks (each hook an extension has costs a context manager per operation): strawberry
        # skips its own parse when the document is there, and its validation when the errors
        # are. A document that does not parse is left to strawberry (its error, its code).
        if context.query and context.graphql_document is None:
            context.graphql_document = parsed(context.query, self.settings.max_query_tokens)
        if context.graphql_document is not None:
            context.pre_execution_errors = validated(
                context.schema._schema, context.graphql_document, context.validation_rules
            )
        yield
        publish(context.result)
        record_operation(context, started)

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        share_reads(context.context, context.operation_type)
        document = context.graphql_document
        cost = 0
        if document is not None and context.operation_type is not OperationType.SUBSCRIPTION:
            cost, refused = cost_refusal(context, self.settings, self.costs)
            if refused is not None:
                context.result = ExecutionResult(data=None, errors=[refused])
        unstorable = text_refusal(document, context.variables, context.query)
        if unstorable is not None:
            context.result = ExecutionResult(data=None, errors=[unstorable])
        caller = getattr(context.context, "principal", None)
        if (
            context.result is not None
            or caller is None  # not authenticated: refused when a field asks for the caller
            or context.operation_type is OperationType.SUBSCRIPTION
        ):
            yield
            return
        async with contextlib.AsyncExitStack() as turn:
            try:
                held = self.budgets.held(caller.tenant, cost, self.settings.statement_timeout)
                await turn.enter_async_context(held)
            except TimedOut as error:
                # Its turn never came: answered TIMEOUT, and the hook still yields (strawberry
                # requires it; with a result set, nothing executes).
                timeout = GraphQLError(str(error), extensions={"code": TIMEOUT, "cost": cost})
                context.result = ExecutionResult(data=None, errors=[timeout])
            yield

    def on_stream_result(self, result: object) -> Iterator[None]:
        publish(result)
        yield


def request_policy(settings: Settings) -> Callable[[], SchemaExtension]:
    """The factory of `RequestPolicy` (strawberry makes one per operation); the rules, the
    tenants' budgets and the costs' memo are made once, here."""
    rules = validation_rules(settings)
    budgets = TenantBudgets(settings.tenant_cost_budget)
    costs = CostMemo(settings)
    return lambda: RequestPolicy(settings=settings, rules=rules, budgets=budgets, costs=costs)
