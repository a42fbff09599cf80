"""The cost limit: the probe's operations (small documents, each holding the pool for tens of
seconds) are refused before anything runs, with their cost; the documented operations are
well within the limit, and docs/operations.md says what each costs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from graphql import parse
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api import cost
from service.api.schema import build_schema
from service.config import Settings
from service.errors import TimedOut
from tests.api.support import bearer, codes, data, post, request, shop

SETTINGS = Settings(federation=True)
SCHEMA = build_schema(SETTINGS)

ALIASED_COUNTS = (
    "{ "
    + " ".join(
        f'c{n}: customers(where: "percentile(monetary) > 0.{n:02d}", first: 1) {{ totalCount }}'
        for n in range(30)
    )
    + " }"
)
NESTED_HISTORY = (
    "{ "
    + " ".join(
        f"a{n}: customers(first: 100) {{ edges {{ node {{ history(last: 100) {{ customer {{ "
        "history(last: 100) { customer { history(last: 100) { id } } } } } } } }"
        for n in range(30)
    )
    + " }"
)


def cost_of(query: str, variables: dict[str, Any] | None = None, **settings: Any) -> int:
    return cost.operation_cost(
        SCHEMA._schema, parse(query), Settings(**settings), variables=variables
    )


def test_every_resolved_field_has_a_declared_cost() -> None:
    """A new field with a resolver must say what it costs (plain fields cost nothing)."""
    converter = SCHEMA.config.name_converter
    missing = []
    for name, graphql_type in SCHEMA._schema.type_map.items():
        definition = SCHEMA.get_type_by_name(name)
        if name.startswith("__") or not hasattr(definition, "fields"):
            continue
        for field in definition.fields:  # type: ignore[union-attr]
            key = (graphql_type.name, converter.get_graphql_name(field))
            if field.base_resolver is not None and key not in cost.FIELD_COSTS:
                missing.append(key)
    assert missing == []


def test_pages_multiply_down_the_nesting_and_aliases_add_up() -> None:
    one = cost_of("{ customers(first: 10) { edges { node { history(last: 5) { id } } } } }")
    # The connection, then per customer: its row, its history's 5 rows.
    assert one == 1 + 10 * (1 + 5)
    assert (
        cost_of("query ($n: Int) { customers(first: $n) { edges { node { id } } } }", {"n": 20})
        == 1 + 20
    )
    # Unsized: the page the resolver would use (the page size limit).
    assert cost_of("{ customers { edges { node { id } } } }", max_page_size=7) == 1 + 7
    aliased = "{ a: customers(first: 10) { totalCount } b: customers(first: 10) { totalCount } }"
    assert cost_of(aliased) == 2 * (1 + cost.TENANT_SCAN)
    fragment = (
        "{ customers(first: 10) { edges { node { ...card } } } } "
        "fragment card on Customer { tiers { tier } metrics { recency } }"
    )
    assert cost_of(fragment) == 1 + 10 * (1 + 1 + 1)


def test_whole_tenant_fields_and_ranked_metrics_cost_more() -> None:
    plain = cost_of('{ customers(first: 0, where: "monetary > 5") { pageInfo { endCursor } } }')
    ranked = cost_of('{ customers(first: 0, where: "r_score = 5") { pageInfo { endCursor } } }')
    assert plain == 1 + cost.TENANT_SCAN
    assert ranked == plain + cost.RANKED


def test_the_probes_operations_cost_more_than_the_limit() -> None:
    limit = Settings().max_query_cost
    assert cost_of(ALIASED_COUNTS) > 5 * limit
    assert cost_of(NESTED_HISTORY) > 1000 * limit
    entities = "query ($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { id } } }"
    representations = [{"__typename": "Customer", "id": f"c{n}"} for n in range(100_000)]
    assert cost_of(entities, {"r": representations}) > 10 * limit


async def test_an_operation_over_the_limit_is_refused_before_it_runs(
    engine: AsyncEngine, tenant: str
) -> None:
    statements = 0

    def counted(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", counted)
    try:
        refused = await post(engine, tenant, ALIASED_COUNTS)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", counted)
    assert statements == 0
    assert codes(refused) == ["LIMIT_EXCEEDED"]
    (error,) = refused["errors"]
    assert error["extensions"]["cost"] == cost_of(ALIASED_COUNTS)
    assert error["extensions"]["limit"] == Settings().max_query_cost
    assert "TIERWISE_MAX_QUERY_COST" in error["message"]
    # A request error for clients of the GraphQL-over-HTTP media type: 400, no data.
    modern = {**bearer(tenant), "Accept": "application/graphql-response+json"}
    response = await request(engine, {"query": ALIASED_COUNTS}, modern)
    assert response.status_code == 400 and "data" not in response.json()


async def test_the_limit_is_a_setting(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    card = '{ customer(id: "ann") { tiers { tier } strategies { name } metrics { recency } } }'
    assert data(await post(engine, tenant, card))["customer"]["tiers"]
    tight = Settings(max_query_cost=cost_of(card) - 1)
    assert codes(await post(engine, tenant, card, settings=tight)) == ["LIMIT_EXCEEDED"]


def test_the_documented_operations_are_within_the_limit_and_their_costs_documented() -> None:
    table = cost.operations_table(SCHEMA._schema, SETTINGS)
    rows = table.splitlines()[2:]
    assert len(rows) == len(list(cost.OPERATIONS.glob("*.graphql")))
    for row in rows:
        assert int(row.split("|")[3].strip().replace(",", "")) <= Settings().max_query_cost // 2
    document = cost.DOC.read_text(encoding="utf-8")
    assert cost.replaced(document, table) == document, (
        "docs/operations.md is out of date: run `python -m service.api.cost --write`"
    )


async def test_a_tenants_heavy_operations_take_turns_and_the_others_go_on() -> None:
    """Within a budget of two heavy operations: A's third waits (and A's cheap one behind it:
    first come, first served, so a heavy one is never starved), B's go on; when one of A's
    finishes, its third runs; a wait past its bound is TimedOut."""
    budgets = cost.TenantBudgets(4_000)
    order: list[str] = []
    release = asyncio.Event()

    async def run(tenant: str, weight: int, name: str, wait: float = 30) -> None:
        async with budgets.held(tenant, weight, wait):
            order.append(name)
            if name.startswith("heavy"):
                await release.wait()

    first = [asyncio.create_task(run("a", 2_000, f"heavy {n}")) for n in (1, 2)]
    await asyncio.sleep(0)
    later = [
        asyncio.create_task(run("a", 2_000, "heavy 3")),
        asyncio.create_task(run("a", 30, "cheap a")),
    ]
    await asyncio.sleep(0.05)
    await run("b", 2_000, "b's own")  # B: its own budget
    await run("b", 30, "b's card")
    assert order == ["heavy 1", "heavy 2", "b's own", "b's card"]
    with pytest.raises(TimedOut, match="TIERWISE_TENANT_COST_BUDGET"):
        await run("a", 30, "too late", wait=0.1)
    release.set()
    await asyncio.gather(*first, *later)
    assert order[4:] == ["heavy 3", "cheap a"]


def test_a_remembered_cost_is_the_cost_for_the_values_it_depends_on() -> None:
    """`CostMemo` keeps a cost per the values of the variables the cost read: the card's id
    is read by no cost (one entry for every customer), a page's `first` is (one per size)."""
    settings = Settings()
    schema = build_schema(settings)._schema
    memo = cost.CostMemo(settings)
    card = parse((cost.OPERATIONS / "customer_card.graphql").read_text())
    page = parse("query ($n: Int) { customers(first: $n) { edges { node { id } } } }")
    for name in ("ann", "bob", "cyd"):
        assert memo.cost(schema, card, None, {"id": name, "scheme": "value"}) == 34
    for size in (10, 50, 10, None):
        expected = cost.operation_cost(schema, page, settings, variables={"n": size})
        assert memo.cost(schema, page, None, {"n": size}) == expected
    assert memo.cost(schema, page, None, {"n": 10}) == 11
    known = {read: costs for _, read, costs in memo._known.values()}
    assert known == {(): {(): 34}, ("n",): {(10,): 11, (50,): 51, (None,): 101}}


def test_a_variable_sent_as_null_is_not_its_default() -> None:
    """`first: $n` with `$n = 1` costs a page of one; sent as null it is the largest page, so
    a remembered cost of the first must not pass the second under the limit."""
    settings = Settings()
    schema = build_schema(settings)._schema
    memo = cost.CostMemo(settings)
    page = parse("query ($n: Int = 1) { customers(first: $n) { edges { node { id } } } }")
    small = memo.cost(schema, page, None, {})
    assert memo.cost(schema, page, None, {"n": None}) == cost.operation_cost(
        schema, page, settings, variables={"n": None}
    )
    assert memo.cost(schema, page, None, {"n": None}) > small == memo.cost(schema, page, None, {})


async def test_a_request_cancelled_while_it_waits_gives_back_its_turn() -> None:
    """A client that goes away cancels its request: cancelled just as its turn came, or while
    it waits as another operation finishes, it must leave the tenant's budget whole (a lost
    share made every later heavy operation of the tenant wait out its time)."""
    budgets = cost.TenantBudgets(2_000)
    release = asyncio.Event()

    async def hold() -> None:
        async with budgets.held("a", 2_000, 30):
            await release.wait()

    async def wait_then_run() -> None:
        async with budgets.held("a", 2_000, 30):
            pass

    for cancel_first in (False, True):
        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(wait_then_run())
        await asyncio.sleep(0)
        if cancel_first:  # cancelled while waiting; the release then finds it in the queue
            waiter.cancel()
            release.set()
        else:  # its turn comes (the release), then it is cancelled before it resumes
            release.set()
            await asyncio.sleep(0)
            waiter.cancel()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.clear()
        assert budgets._running == {} and budgets._waiting == {}
        await asyncio.wait_for(wait_then_run(), 1)  # runs at once: nothing leaked
