"""Executing a query's plain fields without graphql-core's per-field machinery.

graphql-core completes every field the same general way: it looks the field up, builds a
`GraphQLResolveInfo`, calls the resolver through strawberry's wrapper, and walks the return
type (non-null, list, leaf, abstract, object) to complete the value. For a customer card that
is most of the execution's cost, spent on fields that only read an attribute of what a
resolver returned (`scheme`, `tier`, `name` of each membership and strategy).

`PlannedExecutor` is graphql-core's executor (strawberry's, as the schema would use) with a
plan per field of a document, made the first time the field is executed and kept with its
node (documents are parsed once and cached, `service.api.limits.parsed`):

- a **plain leaf** (`FieldPlan`): a strawberry field with no resolver, no arguments, no
  extensions, read by the default resolver (``getattr``), whose type is a scalar or enum,
  possibly non-null. The executor reads the attribute and completes it exactly as
  graphql-core's `complete_value` would (the same coercion, the same error for a null in a
  non-null field, the same located error and null propagation through
  `Executor.handle_field_error`);
- a **list of objects** whose items need no runtime type check: each item's selection is
  executed directly, without the per-item completion chain (and the same errors);
- anything else (a root field, a resolver, arguments, a directive, `__typename`, an abstract
  type, an awaitable value, a null or awaitable list item): graphql-core's own
  `execute_field` / `complete_value`, unchanged.

So the document is still executed by graphql-core (root fields, resolvers, variables,
errors' collection), and the plan takes over only where it can show, from the schema alone,
that graphql-core would read an attribute and coerce it.

Only queries are planned: mutations and subscriptions execute as graphql-core does. The
response, errors included, is the same as graphql-core's, byte for byte in JSON
(tests/api/test_plans.py runs every published operation both ways for every role).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    OperationType,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.incremental.incremental_executor import DeliveryGroupMap
from graphql.pyutils import AwaitableOrValue, Path, Undefined, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

# strawberry's name for the resolver of a basic field (no resolver, no extensions, no
# exception handlers): it reads the attribute and ignores the info object.
_BASIC_RESOLVER = "_get_basic_result"


class FieldPlan:
    """How to complete one plain leaf field of a document on one parent type."""

    __slots__ = ("attribute", "leaf", "message", "non_null", "return_type")

    def __init__(self, attribute: str, return_type: GraphQLOutputType, message: str) -> None:
        self.attribute = attribute
        self.return_type = return_type
        self.non_null = isinstance(return_type, GraphQLNonNull)
        leaf = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
        assert is_leaf_type(leaf)
        self.leaf: GraphQLLeafType = leaf
        self.message = message


# Not a plan: graphql-core executes the field.
_GENERAL = object()
# A plain leaf's value that is awaitable (graphql-core executes the field).
_AWAITABLE = object()
_Settled = TypeVar("_Settled", dict[str, Any], list[Any])

# Values of these classes are complete once coerced.
_SIMPLE = frozenset({str, int, bool, float})
# Plans by (field node, parent type), both by identity and kept with the plan (an id is
# only unique while its object lives); bounded like the document caches they follow.
_PLANS: dict[tuple[int, int], tuple[FieldNode, GraphQLObjectType, FieldPlan | object]] = {}
_MAX_PLANS = 4096


def plain_leaf(parent_type: GraphQLObjectType, node: FieldNode) -> FieldPlan | None:
    """The plan of ``node`` on ``parent_type`` if it is a plain leaf (see the module)."""
    name = node.name.value
    field = parent_type.fields.get(name)
    if field is None or field.args or node.arguments or node.directives:
        return None
    definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    resolve = field.resolve
    if (
        not isinstance(definition, StrawberryField)
        or not definition.is_basic_field
        or definition.default_resolver is not getattr
        or resolve is None
        or getattr(resolve, "__name__", None) != _BASIC_RESOLVER
    ):
        return None
    return_type = field.type
    leaf = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
    if not is_leaf_type(leaf):
        return None
    message = f"Cannot return null for non-nullable field {parent_type}.{name}."
    return FieldPlan(definition.python_name, return_type, message)


def _plan(parent_type: GraphQLObjectType, node: FieldNode) -> FieldPlan | None:
    key = (id(node), id(parent_type))
    found = _PLANS.get(key)
    if found is None or found[0] is not node or found[1] is not parent_type:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        made = plain_leaf(parent_type, node)
        found = (node, parent_type, _GENERAL if made is None else made)
        _PLANS[key] = found
    return found[2] if isinstance(found[2], FieldPlan) else None


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, with a query's plain fields completed by their plans."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self.planned = self.operation.operation is OperationType.QUERY and (
            manager is None or not manager.middlewares
        )
        # By the grouped field set's id (kept: ids are unique only while their objects live).
        self._grouped: dict[
            int,
            tuple[
                GroupedFieldSet,
                GraphQLObjectType,
                list[tuple[str, FieldDetailsList, FieldPlan | None]],
            ],
        ] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: DeliveryGroupMap | None,
    ) -> AwaitableOrValue[dict[str, Any]]:
        """graphql-core's `execute_fields`, with plain leaves read by their plans."""
        if not self.planned or path is None:  # a root field is never plain
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        awaitable_fields: list[str] = []
        is_awaitable = self.is_awaitable
        try:
            for response_name, field_details_list, plan in self._steps(
                parent_type, grouped_field_set
            ):
                if plan is not None:
                    value = self._plain(
                        plan, parent_type, source_value, path, response_name, field_details_list
                    )
                    if value is not _AWAITABLE:
                        results[response_name] = value
                        continue
                result = self.execute_field(
                    parent_type,
                    source_value,
                    field_details_list,
                    Path(path, response_name, parent_type.name),
                    position_context,
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results
        return _gathered(results, awaitable_fields)

    def _steps(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> list[tuple[str, FieldDetailsList, FieldPlan | None]]:
        """The fields of ``grouped_field_set`` with their plans, once per execution (graphql-core
        memoizes a selection's grouped fields per execution: every item of a list shares
        them)."""
        found = self._grouped.get(id(grouped_field_set))
        if found is None or found[0] is not grouped_field_set or found[1] is not parent_type:
            steps = [
                (name, details, _plan(parent_type, details[0].node))
                for name, details in grouped_field_set.items()
            ]
            found = (grouped_field_set, parent_type, steps)
            self._grouped[id(grouped_field_set)] = found
        return found[2]

    def _plain(
        self,
        plan: FieldPlan,
        parent_type: GraphQLObjectType,
        source: Any,
        path: Path,
        response_name: str,
        field_details_list: FieldDetailsList,
    ) -> Any:
        """A plain leaf completed as graphql-core's `execute_field` and `complete_value`
        would; `_AWAITABLE` when the attribute is awaitable (graphql-core then executes the
        field, reading it again)."""
        try:
            result = getattr(source, plan.attribute)
            if result.__class__ in _SIMPLE:  # neither null, awaitable nor an exception
                completed = plan.leaf.coerce_output_value(result)
                if completed is None or completed is Undefined:
                    completed = self.complete_leaf_value(plan.leaf, result)  # its error
                return completed
            if isinstance(result, Exception):
                raise result
            if result is None or result is Undefined:
                completed = None
            elif self.is_awaitable(result):
                return _AWAITABLE
            else:
                completed = self.complete_leaf_value(plan.leaf, result)
            if completed is None and plan.non_null:
                raise TypeError(plan.message)
        except Exception as raw_error:
            self.handle_field_error(
                raw_error,
                plan.return_type,
                field_details_list,
                Path(path, response_name, parent_type.name),
            )
            return None
        return completed

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: Iterable[Any],
        position_context: DeliveryGroupMap | None,
    ) -> AwaitableOrValue[list[Any]]:
        """graphql-core's, but the items of a list of objects that need no runtime type
        check have their fields executed directly, without graphql-core's completion chain
        per item (non-null, object, `is_type_of`, the memoized subfields). A null or
        awaitable item is completed by graphql-core's own per-item methods."""
        object_type = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        collected = (
            self.collect_subfields(object_type, field_details_list)
            if self.planned
            and position_context is None
            and isinstance(object_type, GraphQLObjectType)
            and object_type.is_type_of is None
            and isinstance(items, list | tuple)
            and self.get_stream_usage(field_details_list, path) is None
            else None
        )
        if collected is None or collected[1]:  # not a plain list, or something deferred
            return super().complete_iterable_value(
                item_type, field_details_list, info, path, items, position_context
            )
        assert isinstance(object_type, GraphQLObjectType)
        grouped_field_set = collected[0]
        is_awaitable = self.is_awaitable
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(items):
                item_path = path.add_key(index, None)
                if is_awaitable(item):
                    completed.append(
                        self.complete_awaitable_list_item_value(
                            item, item_type, field_details_list, info, item_path, None
                        )
                    )
                    awaitable_indices.append(index)
                    continue
                if item is None:
                    if self.complete_list_item_value(
                        item, completed, item_type, field_details_list, info, item_path, None
                    ):
                        awaitable_indices.append(index)
                    continue
                try:
                    value = self.execute_fields(
                        object_type, item, item_path, grouped_field_set, None
                    )
                    if is_awaitable(value):
                        value = self._item(value, item_type, field_details_list, item_path)
                        awaitable_indices.append(index)
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                    value = None
                completed.append(value)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed[index] for index in awaitable_indices])
            raise
        if not awaitable_indices:
            return completed
        return _gathered(completed, awaitable_indices)

    async def _item(
        self,
        value: Awaitable[Any],
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        item_path: Path,
    ) -> Any:
        # As graphql-core's `complete_list_item_value` awaits an item's completion.
        try:
            return await value
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, field_details_list, item_path)
            return None


# The concurrent ends of graphql-core's `execute_fields` and `complete_iterable_value`.


async def _gathered(values: _Settled, keys: list[Any]) -> _Settled:
    """``values`` (a selection's results by name, or a list's items by index) with the
    awaitables at ``keys`` replaced by what they give, awaited together."""
    if len(keys) == 1:
        values[keys[0]] = await values[keys[0]]
    else:
        awaited = await gather_with_cancel(*(values[key] for key in keys))
        for key, value in zip(keys, awaited, strict=True):
            values[key] = value
    return values
