"""What a GraphQL operation may cost, computed from the document before anything runs.

Depth, aliases and tokens bound a document's size, not its work: 30 aliases of a filtered
`totalCount`, or pages of customers each with 100 transitions each with its customer's 100
transitions, are small documents that held every pooled connection for 40 s. The cost is an
estimate of the work in rows, with each field's weight in `FIELD_COSTS`:

- every field a resolver answers costs its weight (a loader's batch item: 1);
- a list multiplies what is selected under it by its size: the page asked for (`first`,
  `last`, defaulting to what the resolver defaults to), the `_entities` representations
  given, and `ASSUMED_LIST` for lists the caller cannot size (a customer's tiers, a scheme's
  strategies); lists of plain values cost nothing;
- work over a whole tenant costs `TENANT_SCAN`: `totalCount`, a `where` filter (again
  `RANKED` more when it ranks customers: percentiles, scores, shares), segments; an
  evaluation (preview, publish, evaluate) `RUN`;
- aliases are counted as the fields they repeat; fragments as the fields they hold (both
  branches of a type condition); `@skip` and `@include` are ignored (the cost of the
  document, whatever its variables choose).

An operation over `Settings.max_query_cost` is refused before it runs, with LIMIT_EXCEEDED
and the cost in ``extensions.cost``. docs/operations.md lists the cost of every documented
operation (`python -m service.api.cost --write`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
    parse,
    value_from_ast_untyped,
)

from dsl import CATALOG
from dsl.catalog import Source
from service import metrics
from service.config import Settings
from service.errors import TimedOut

TENANT_SCAN = 100
"""A pass over a tenant's customers (counting, filtering, aggregating)."""
RANKED = 300
"""Ranking every customer of a tenant (a sort) for a percentile, score or share."""
RUN = 1_000
"""An evaluation of a scheme over every customer."""
ASSUMED_LIST = 10
"""Items of a list the caller cannot size (a customer's tiers, a tier's strategies)."""

_RANKED_NAMES = sorted(
    name for name, metric in CATALOG.items() if metric.source is Source.POPULATION
)
_RANKS = re.compile(r"\b(?:" + "|".join(map(re.escape, _RANKED_NAMES)) + r")\b")


@dataclass(frozen=True)
class Field:
    """How one field costs: its own ``weight`` (given the field's arguments and the
    settings), and the size of the list it returns (None: not a list, or one of plain
    values; else the number of items its selection is counted for)."""

    weight: Callable[[Mapping[str, Any], Settings], int] = lambda args, settings: 1
    size: Callable[[Mapping[str, Any], Settings], int] | None = None


def _fixed(weight: int) -> Callable[[Mapping[str, Any], Settings], int]:
    return lambda args, settings: weight


def _where(args: Mapping[str, Any], settings: Settings) -> int:
    where = args.get("where")
    if not isinstance(where, str):
        return 1
    return 1 + TENANT_SCAN + (RANKED if _RANKS.search(where) else 0)


def _page(
    name: str, default: Callable[[Settings], int]
) -> Callable[[Mapping[str, Any], Settings], int]:
    """A page's size from argument ``name``: what the resolver would use, never above the
    page size limit (a bigger one is refused by the resolver anyway)."""

    def size(args: Mapping[str, Any], settings: Settings) -> int:
        value = args.get(name)
        asked = default(settings) if not isinstance(value, int) else value
        return max(0, min(asked, settings.max_page_size))

    return size


def _rows(name: str) -> Callable[[Mapping[str, Any], Settings], int]:
    """One per row of list argument ``name`` (ingest mutations)."""
    return lambda args, settings: max(1, len(args.get(name) or ()))


def _evaluates(args: Mapping[str, Any], settings: Settings) -> int:
    return RUN if args.get("evaluate", True) else 10


_FIRST_DEFAULT_PAGE = _page("first", lambda settings: settings.max_page_size)
# Pages of rows: each row costs one, and so does each of what is selected under it.
_FIFTY_FIRST = _page("first", lambda settings: 50)
_FIFTY_LAST = _page("last", lambda settings: 50)
_TEN_LAST = _page("last", lambda settings: 10)


def _assumed(args: Mapping[str, Any], settings: Settings) -> int:
    return ASSUMED_LIST


# Every field a resolver answers, by type and field name (tests/api/test_cost.py fails on a
# resolved field missing here). Fields of plain values cost nothing and need no entry.
FIELD_COSTS: Mapping[tuple[str, str], Field] = {
    ("Query", "customer"): Field(),
    ("Query", "explain"): Field(_fixed(10)),
    # The page's size is the connection's edges' (see `_CONNECTIONS`).
    ("Query", "customers"): Field(_where),
    ("CustomerConnection", "totalCount"): Field(_fixed(TENANT_SCAN)),
    ("CustomerEdge", "node"): Field(),  # a row of the page
    ("Query", "segments"): Field(_fixed(TENANT_SCAN), _assumed),
    ("Segment", "strategies"): Field(size=_assumed),
    ("Query", "schemes"): Field(size=_assumed),
    ("Query", "schemeVersions"): Field(size=_assumed),
    ("Query", "schemeDiff"): Field(),
    ("Query", "evaluationRuns"): Field(_TEN_LAST, _TEN_LAST),
    # Passes over a scheme's recorded tier changes (and orders, for churn).
    ("Query", "tierSizes"): Field(_fixed(TENANT_SCAN), _assumed),
    ("Query", "migrationMatrix"): Field(_fixed(TENANT_SCAN), _assumed),
    ("Query", "churn"): Field(_fixed(TENANT_SCAN), _assumed),
    ("Query", "textValues"): Field(_fixed(TENANT_SCAN), _FIFTY_FIRST),
    ("Query", "strategies"): Field(size=_assumed),
    ("Query", "metrics"): Field(size=_assumed),
    ("Query", "checkRules"): Field(_fixed(10)),
    ("Query", "previewRules"): Field(_fixed(RUN), _assumed),
    ("Query", "webhooks"): Field(size=_assumed),
    ("Query", "webhookDeliveries"): Field(_FIFTY_FIRST, _FIFTY_FIRST),
    ("Query", "auditLog"): Field(_FIFTY_FIRST, _FIFTY_FIRST),
    ("Query", "apiKeys"): Field(size=_assumed),
    ("Query", "_service"): Field(),
    ("_Service", "sdl"): Field(),
    # A lookup per representation, and what is selected of each.
    ("Query", "_entities"): Field(_rows("representations"), _rows("representations")),
    ("Customer", "name"): Field(_fixed(0)),
    # Made from what the strategy was read with, when asked for (no statement).
    ("Strategy", "id"): Field(_fixed(0)),
    ("Strategy", "parameters"): Field(_fixed(0)),
    ("Customer", "email"): Field(_fixed(0)),
    ("Customer", "phone"): Field(_fixed(0)),
    ("Customer", "tiers"): Field(size=_assumed),
    ("Customer", "strategies"): Field(size=_assumed),
    ("Customer", "metrics"): Field(),
    ("Customer", "explain"): Field(_fixed(10)),
    ("Customer", "history"): Field(_FIFTY_LAST, _FIFTY_LAST),
    ("Transition", "customer"): Field(),
    ("Subscription", "tierChanged"): Field(),
    ("Mutation", "publishScheme"): Field(_evaluates, _assumed),
    ("Mutation", "evaluateScheme"): Field(_fixed(RUN), _assumed),
    ("Mutation", "upsertCustomers"): Field(_rows("customers")),
    ("Mutation", "recordOrders"): Field(_rows("orders")),
    ("Mutation", "recordEvents"): Field(_rows("events")),
    ("Mutation", "deleteOrders"): Field(_rows("ids")),
    ("Mutation", "deleteEvents"): Field(_rows("ids")),
    ("Mutation", "eraseCustomers"): Field(_rows("ids")),
    ("Mutation", "saveStrategy"): Field(),
    ("Mutation", "deleteStrategy"): Field(),
    ("Mutation", "createWebhook"): Field(),
    ("Mutation", "deleteWebhook"): Field(),
    ("Mutation", "replayWebhookDelivery"): Field(),
    ("Mutation", "replayDeadDeliveries"): Field(_fixed(TENANT_SCAN)),
    # One indexed row, free as the rows a page counts for its fields; the calibration is a
    # holdout fit of its own, priced as a run.
    ("Query", "model"): Field(_fixed(0)),
    ("Model", "calibration"): Field(_fixed(RUN)),
    ("Mutation", "fitModel"): Field(_fixed(RUN)),
    ("Mutation", "createApiKey"): Field(),
    ("Mutation", "revokeApiKey"): Field(),
}

# Connections: the list field under them that their page argument sizes.
_CONNECTIONS: Mapping[tuple[str, str], tuple[str, Callable[[Mapping[str, Any], Settings], int]]] = {
    ("Query", "customers"): ("edges", _FIRST_DEFAULT_PAGE),
}

_UNSIZED = Field(weight=_fixed(0))


class _Costing:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        settings: Settings,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = dict(variables)
        self.settings = settings
        self.read: set[str] = set()

    def selection(
        self, parent: GraphQLObjectType, selections: SelectionSetNode, page: int | None = None
    ) -> int:
        total = 0
        for node in selections.selections:
            if isinstance(node, FieldNode):
                total += self.field(parent, node, page)
            else:
                fragment: InlineFragmentNode | FragmentDefinitionNode | None
                if isinstance(node, FragmentSpreadNode):
                    fragment = self.fragments.get(node.name.value)
                else:
                    fragment = cast(InlineFragmentNode, node)
                if fragment is None:
                    continue
                condition = fragment.type_condition
                on = self.schema.get_type(condition.name.value) if condition else parent
                # An interface or union: its fields are counted on each object type's terms.
                if isinstance(on, GraphQLObjectType):
                    total += self.selection(on, fragment.selection_set, page)
                elif on is not None:
                    for possible in self.schema.get_possible_types(on):  # type: ignore[arg-type]
                        total += self.selection(possible, fragment.selection_set, page)
        return total

    def field(self, parent: GraphQLObjectType, node: FieldNode, page: int | None) -> int:
        name = node.name.value
        definition = parent.fields.get(name)
        if definition is None:  # __typename, introspection
            return 0
        arguments = self._arguments(node)
        known = FIELD_COSTS.get((parent.name, name), _UNSIZED)
        own = known.weight(arguments, self.settings)
        if node.selection_set is None:
            return own
        connection = _CONNECTIONS.get((parent.name, name))
        if connection is not None:
            page = connection[1](arguments, self.settings)
        size = 1
        if connection is None and _is_list(definition.type):
            if (parent.name, name) in FIELD_COSTS and known.size is not None:
                size = known.size(arguments, self.settings)
            elif page is not None:
                size = page  # the connection's edges
            else:
                size = ASSUMED_LIST
        target = get_named_type(definition.type)
        children = 0
        if isinstance(target, GraphQLObjectType):
            children = self.selection(target, node.selection_set, page)
        else:
            for possible in self.schema.get_possible_types(target):
                children = max(children, self.selection(possible, node.selection_set, page))
        return own + size * children

    def _arguments(self, node: FieldNode) -> Mapping[str, Any]:
        """The field's arguments as given (variables filled in), uncoerced: a value the
        field would refuse is refused when the operation runs, not here."""
        return _Arguments(node, self.variables, self.read)


class _Arguments(dict[str, Any]):
    """A field's arguments that note, in ``read``, the variables of each one a cost reads:
    the cost depends on those variables' values alone (`CostMemo`)."""

    def __init__(self, node: FieldNode, variables: dict[str, Any], read: set[str]) -> None:
        super().__init__(
            (argument.name.value, value_from_ast_untyped(argument.value, variables))
            for argument in node.arguments or ()
        )
        self._nodes = {argument.name.value: argument.value for argument in node.arguments or ()}
        self._read = read

    def get(self, key: str, default: Any = None) -> Any:
        node = self._nodes.get(key)
        if node is not None:
            self._read.update(_variables_in(node))
        return super().get(key, default)


def _variables_in(node: ValueNode) -> Iterator[str]:
    if isinstance(node, VariableNode):
        yield node.name.value
    elif isinstance(node, ListValueNode):
        for value in node.values:
            yield from _variables_in(value)
    elif isinstance(node, ObjectValueNode):
        for field in node.fields:
            yield from _variables_in(field.value)


def _is_list(type_: GraphQLOutputType) -> bool:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    settings: Settings,
    *,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The cost of ``document``'s operation (the one named, or its only one); 0 when there is
    no such operation (the request fails on that, not on its cost)."""
    return _costed(schema, document, settings, operation_name, variables)[0]


def _costed(
    schema: GraphQLSchema,
    document: DocumentNode,
    settings: Settings,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> tuple[int, frozenset[str]]:
    """The cost, and the variables whose values it depends on."""
    operation: OperationDefinitionNode | None = get_operation_ast(document, operation_name)
    if operation is None:
        return 0, frozenset()
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0, frozenset()
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    given = {
        definition.variable.name.value: value_from_ast_untyped(definition.default_value)
        for definition in operation.variable_definitions or ()
        if definition.default_value is not None
    }
    given.update(variables or {})
    costing = _Costing(schema, fragments, given, settings)
    return costing.selection(root, operation.selection_set), frozenset(costing.read)


# A variable not sent takes the document's default; one sent as null overrides it (`first:
# null` is the largest page), so the two are different keys.
_ABSENT = object()


class CostMemo:
    """Costs already computed, for the app's schema and settings: per document (the same
    object for the same text, `service.api.limits.parsed`) and operation, the variables the
    cost read, and per their values the cost. A customer card's cost reads none of its
    variables (its id is no page size), so every card after the first costs a lookup; a
    page's cost is kept per `first`. At most ``size`` documents, the least recently used
    dropped."""

    def __init__(self, settings: Settings, size: int = 256) -> None:
        self.settings = settings
        self.size = size
        # id(document), operation -> the document (so a recycled id cannot match), the
        # variables read, the costs by those variables' values.
        self._known: collections.OrderedDict[
            tuple[int, str | None], tuple[DocumentNode, tuple[str, ...], dict[Any, int]]
        ] = collections.OrderedDict()

    def cost(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> int:
        given = variables or {}
        key = (id(document), operation_name)
        known = self._known.get(key)
        if known is not None and known[0] is document:
            self._known.move_to_end(key)
            _, read, costs = known
            values = tuple(given.get(name, _ABSENT) for name in read)
            try:
                return costs[values]
            except KeyError:
                pass
            except TypeError:  # a list or object as the value: not kept
                return _costed(schema, document, self.settings, operation_name, given)[0]
        cost, used = _costed(schema, document, self.settings, operation_name, given)
        if known is None or known[0] is not document:
            known = (document, tuple(sorted(used)), {})
            self._known[key] = known
            if len(self._known) > self.size:
                self._known.popitem(last=False)
        _, read, costs = known
        if set(read) >= used:
            values = tuple(given.get(name, _ABSENT) for name in read)
            with contextlib.suppress(TypeError):
                if len(costs) < self.size:
                    costs[values] = cost
        return cost


def over_limit(cost: int, limit: int) -> GraphQLError:
    """The error of an operation refused for its cost (no path: nothing ran)."""
    return GraphQLError(
        f"the operation costs {cost:,}, over the limit of {limit:,} (TIERWISE_MAX_QUERY_COST): "
        "ask for smaller pages, fewer aliases or fewer whole-tenant fields "
        "(totalCount, where, segments)",
        extensions={"code": "LIMIT_EXCEEDED", "cost": cost, "limit": limit},
    )


# --- the cost under way per tenant ---------------------------------------------------------------


class TenantBudgets:
    """Per tenant, the cost of its operations running in this process, kept within
    ``budget``: an operation whose cost does not fit waits, holding nothing (no connection,
    no CPU), and the tenant's later ones behind it (first come, first served: a heavy one is
    never starved), until enough of the tenant's running ones finish. One tenant's heavy
    operations so take turns among themselves while every other tenant's go on: the event
    loop, which all tenants share, is not filled with one tenant's work."""

    def __init__(self, budget: int) -> None:
        self.budget = max(1, budget)
        self._running: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[tuple[int, asyncio.Future[None]]]] = {}

    @contextlib.asynccontextmanager
    async def held(self, tenant: str, cost: int, wait: float) -> AsyncIterator[None]:
        """Run within ``tenant``'s budget; `TimedOut` after ``wait`` seconds (0: no bound)."""
        share = min(max(cost, 0), self.budget)
        queue = self._waiting.setdefault(tenant, collections.deque())
        if queue or self._running.get(tenant, 0) + share > self.budget:
            turn = asyncio.get_running_loop().create_future()
            queue.append((share, turn))
            waited = time.perf_counter()
            try:
                async with asyncio.timeout(wait or None):
                    await turn
            except BaseException as stopped:  # the wait ran out, or the request was cancelled
                if turn.done() and not turn.cancelled():
                    # Its turn came just as it stopped waiting: `_wake` counted it as running.
                    self._running[tenant] -= share
                else:
                    with contextlib.suppress(ValueError):  # `_wake` dropped it, cancelled
                        queue.remove((share, turn))
                self._wake(tenant)
                if not isinstance(stopped, TimeoutError):
                    raise
                _observe_wait("timed_out", waited)
                raise TimedOut(
                    f"waited {wait:g} s for this tenant's operations under way to finish "
                    f"(their cost is held within {self.budget:,}: TIERWISE_TENANT_COST_BUDGET)"
                ) from None
            _observe_wait("ran", waited)
        else:
            self._running[tenant] = self._running.get(tenant, 0) + share
        try:
            yield
        finally:
            self._running[tenant] -= share
            self._wake(tenant)

    def _wake(self, tenant: str) -> None:
        queue = self._waiting.get(tenant)
        while queue and self._running.get(tenant, 0) + queue[0][0] <= self.budget:
            share, turn = queue.popleft()
            if not turn.done():
                self._running[tenant] = self._running.get(tenant, 0) + share
                turn.set_result(None)
        if not queue:
            self._waiting.pop(tenant, None)
        if not self._running.get(tenant):
            self._running.pop(tenant, None)


def _observe_wait(outcome: str, since: float) -> None:
    metrics.TENANT_BUDGET_WAIT_SECONDS.labels(outcome).observe(time.perf_counter() - since)


# --- the documented operations' costs, for docs/operations.md ----------------------------------

OPERATIONS = Path(__file__).resolve().parents[2] / "graphql" / "operations"
DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
BEGIN = "<!-- operation costs:begin (python -m service.api.cost --write) -->"
END = "<!-- operation costs:end -->"


def operations_table(schema: GraphQLSchema, settings: Settings) -> str:
    """Each documented operation with its cost under ``settings``, as a Markdown table."""
    lines = ["| operation | file | cost |", "|---|---|---|"]
    for path in sorted(OPERATIONS.glob("*.graphql")):
        document = parse(path.read_text())
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode) and definition.name:
                name = definition.name.value
                cost = operation_cost(schema, document, settings, operation_name=name)
                lines.append(f"| `{name}` | `{path.name}` | {cost:,} |")
    return "\n".join(lines) + "\n"


def replaced(document: str, table: str) -> str:
    head, found, rest = document.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"{DOC} lacks the markers {BEGIN!r} ... {END!r}")
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(arguments: list[str]) -> None:
    from service.api.schema import build_schema  # the schema imports this module

    settings = Settings(federation=True)
    table = operations_table(build_schema(settings)._schema, settings)
    if arguments == ["--write"]:
        DOC.write_text(replaced(DOC.read_text(encoding="utf-8"), table), encoding="utf-8")
    else:
        print(table, end="")


if __name__ == "__main__":
    main(sys.argv[1:])
