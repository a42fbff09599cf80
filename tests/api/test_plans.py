"""The planned executor (service/api/plans.py) answers exactly as graphql-core's: every published
query and the benchmark's card, for every role, byte for byte in JSON; and, on a schema made
for it, plain fields that fail, are null where they may not be, hold awaitables or sit in lists
with null and failing items (errors and null propagation)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from graphql import OperationType, parse
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from service.access.auth import Role
from service.api import plans, schema
from tests.api.support import bearer, request, shop
from tests.api.test_contract import OPERATIONS, RUNS

CARD = (
    "query Customer($id: ID!) { customer(id: $id) { tiers { scheme tier } strategies { name } } }"
)


def _queries() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, (variables, _) in sorted(RUNS.items()):
        text = (OPERATIONS / f"{name}.graphql").read_text()
        operation = parse(text).definitions[0]
        if getattr(operation, "operation", None) is OperationType.QUERY:
            yield name, text, variables
    yield "card", CARD, {"id": "ann"}
    yield "card of no one", CARD, {"id": "nobody"}
    # Errors: a bad variable, a field's error below the root, and a scheme not published.
    yield (
        "card with a failing field",
        CARD.replace("strategies", "explain(scheme: $s)"),
        {
            "id": "ann",
            "s": "nope",
        },
    )


QUERIES = list(_queries())


def test_every_query_of_the_contract_is_compared() -> None:
    names = {name for name, _, _ in QUERIES}
    assert {"customer_card", "segment_members", "segment_list", "explain"} <= names


async def _answers(
    engine: AsyncEngine, tenant: str, role: Role, executor: type[Any]
) -> list[bytes]:
    original = schema.PlannedExecutor
    schema.PlannedExecutor = executor  # type: ignore[misc]
    try:
        answers = []
        for _, text, variables in QUERIES:
            response = await request(
                engine, {"query": text, "variables": variables}, bearer(tenant, role)
            )
            answers.append(response.status_code.to_bytes(2) + response.content)
        return answers
    finally:
        schema.PlannedExecutor = original  # type: ignore[misc]


@pytest.mark.parametrize("role", list(Role))
async def test_every_query_answers_as_graphql_core_does(
    engine: AsyncEngine, tenant: str, role: Role
) -> None:
    await shop(engine, tenant)
    plans._PLANS.clear()
    planned = await _answers(engine, tenant, role, plans.PlannedExecutor)
    # The plans were used (the card's `scheme`, `tier` and `name` are plain leaves), but by
    # a role that may read nothing the card has.
    used = any(isinstance(found[2], plans.FieldPlan) for found in plans._PLANS.values())
    assert used is (role is not Role.ingest)
    general = await _answers(engine, tenant, role, StrawberryGraphQLCoreExecutionContext)
    for (name, _, _), mine, theirs in zip(QUERIES, planned, general, strict=True):
        assert mine == theirs, name
    # Not vacuous: personal data for the admin alone, a refusal for a role without
    # read_customers (its errors compared like any data).
    card = json.loads(planned[[n for n, _, _ in QUERIES].index("customer_card")][2:])
    customer = (card.get("data") or {}).get("customer")
    if role is Role.admin:
        assert customer["name"] == "Ann"
    elif role is Role.ingest:
        assert customer is None and card["errors"]
    else:
        assert customer["name"] is None and customer["tiers"]


# --- a schema made to fail in every way a plain field can ------------------------------------


class Boom(Exception):
    pass


class _later:
    """An awaitable value (not a coroutine: one left unselected warns of nothing)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Iterator[object]:
        yield from asyncio.sleep(0).__await__()
        return self.value


@strawberry.type
class Leaf:
    text: str
    maybe: str | None
    number: int


class Raising:
    """A `Leaf` whose attribute read fails."""

    maybe = None
    number = 1

    @property
    def text(self) -> str:
        raise Boom("no text")


@strawberry.type
class Query:
    @strawberry.field
    def leaves(self) -> list[Leaf]:
        return [
            Leaf(text="a", maybe=None, number=1),
            Leaf(text=None, maybe="b", number=2),  # type: ignore[arg-type]
            Raising(),  # type: ignore[list-item]
            Leaf(text="c", maybe=_later("later"), number=3),  # type: ignore[arg-type]
            Leaf(text="d", maybe=Boom("stored"), number="x"),  # type: ignore[arg-type]
        ]

    @strawberry.field
    def nullable_items(self) -> list[Leaf | None]:
        return [
            None,
            Leaf(text=None, maybe=None, number=1),  # type: ignore[arg-type]
            _later(Leaf(text="e", maybe=None, number=5)),  # type: ignore[list-item]
        ]

    @strawberry.field
    def one(self) -> Leaf | None:
        return Leaf(text="f", maybe=_later(None), number=None)  # type: ignore[arg-type]

    @strawberry.field
    async def later(self) -> list[Leaf]:
        return [Leaf(text="g", maybe="h", number=7)]


DOCUMENTS = [
    "{ leaves { text maybe number } }",
    "{ leaves { maybe number } }",
    "{ nullableItems { text maybe number } }",
    "{ nullableItems { maybe n: number m: number } }",
    "{ one { text maybe number __typename } }",
    "{ one { text } later { text maybe } }",
    "{ later { text maybe number } nullableItems { maybe } }",
    "query Q($skip: Boolean!) { later { text @skip(if: $skip) maybe } }",
]


def _result(executor: type[Any], document: str) -> str:
    built = strawberry.Schema(query=Query, execution_context_class=executor)
    result = asyncio.run(built.execute(document, variable_values={"skip": True}))
    errors = [error.formatted for error in result.errors or []]
    return json.dumps({"data": result.data, "errors": errors})


@pytest.mark.parametrize("document", DOCUMENTS)
def test_failing_plain_fields_answer_as_graphql_core_does(document: str) -> None:
    mine = _result(plans.PlannedExecutor, document)
    assert mine == _result(StrawberryGraphQLCoreExecutionContext, document)


def test_plain_leaves_are_planned_and_resolvers_are_not() -> None:
    built = schema.build_schema(schema.Settings())._schema
    membership = built.get_type("Membership")
    customer = built.get_type("Customer")
    node = parse("{ scheme }").definitions[0].selection_set.selections[0]  # type: ignore[attr-defined]
    assert plans.plain_leaf(membership, node) is not None  # type: ignore[arg-type]
    for field in ("tiers", "name", "strategies"):
        node = parse(f"{{ {field} }}").definitions[0].selection_set.selections[0]  # type: ignore[attr-defined]
        assert plans.plain_leaf(customer, node) is None  # type: ignore[arg-type]
