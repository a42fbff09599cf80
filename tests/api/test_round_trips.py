"""Database statements per GraphQL request: a page of a segment costs the same whatever its
size, and the customer card's tiers and strategies a small fixed number (benchmarks/bench_api.py
measures the same on 1,000,000 customers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.ids import codec
from tests.api.support import data, post, shop
from tests.support import order

OPERATIONS = Path(__file__).resolve().parents[2] / "graphql" / "operations"
MEMBERS = (OPERATIONS / "segment_members.graphql").read_text(encoding="utf-8")
# The segment page with each member's recommended strategies as well.
MEMBERS_WITH_STRATEGIES = MEMBERS.replace(
    "        tiers {", "        strategies {\n          name\n        }\n        tiers {"
)
CUSTOMER = "query ($id: ID!) { customer(id: $id) { tiers { scheme tier } strategies { name } } }"

# Upper bounds: a handful of statements per request, whatever the number of rows.
PAGE_MOST = 12
CUSTOMER_MOST = 9


def asyncpg_own(query: str) -> bool:
    """asyncpg's introspection of a type it meets for the first time on a connection (the
    card's arrays of rows), with `jit` turned off around it: once per pooled connection."""
    return (
        query.startswith("WITH RECURSIVE typeinfo_tree")
        or "set_config('jit'" in query
        or ("current_setting('jit')" in query)
    )


async def statements(
    engine: AsyncEngine, tenant: str, query: str, variables: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """How many SQL statements one request runs, and its data: those SQLAlchemy executes and
    those run by asyncpg directly (`service.db.database.Compiled`), which asyncpg's query
    logger sees (as it sees transaction control, which is not counted)."""
    await codec(engine, None)  # an engine's first request reads the id key, once
    seen: list[str] = []
    logged: dict[int, Any] = {}

    def count(*args: object) -> None:
        seen.append(str(args[2]))

    def direct(record: Any) -> None:
        query = record.query.strip().rstrip(";")
        if query.upper() not in {"BEGIN", "COMMIT", "ROLLBACK", ""} and not asyncpg_own(query):
            seen.append(record.query)

    def checkout(dbapi_connection: Any, *_: object) -> None:
        driver = dbapi_connection.driver_connection
        if id(driver) not in logged:
            logged[id(driver)] = driver
            driver.add_query_logger(direct)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    event.listen(engine.sync_engine.pool, "checkout", checkout)
    try:
        found = data(await post(engine, tenant, query, variables))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        event.remove(engine.sync_engine.pool, "checkout", checkout)
        for driver in logged.values():
            driver.remove_query_logger(direct)
    return len(seen), found


async def active_segment(engine: AsyncEngine, tenant: str, extra: int) -> None:
    """``shop``'s three customers plus ``extra`` more with one recent small order each: all
    of those land in tier Active of scheme value (whose strategy is Promotions)."""
    rows = [order(f"m{i}", f"m{i:03}", 5, "40") for i in range(extra)]
    await import_rows(engine, Kind.orders, tenant, enumerate(rows), source="test")
    await shop(engine, tenant)


async def test_a_segment_page_costs_the_same_statements_at_5_and_50(
    engine: AsyncEngine, tenant: str
) -> None:
    await active_segment(engine, tenant, 60)
    for query in (MEMBERS, MEMBERS_WITH_STRATEGIES):
        counts = []
        for size in (5, 50):
            variables = {"scheme": "value", "tier": "Active", "first": size}
            count, found = await statements(engine, tenant, query, variables)
            page = found["customers"]
            assert page["totalCount"] == 61
            assert len(page["edges"]) == size and page["pageInfo"]["hasNextPage"]
            for edge in page["edges"]:
                assert {"scheme": "value", "tier": "Active"} in edge["node"]["tiers"]
                assert edge["node"].get("strategies", [{"name": "Promotions"}]) == [
                    {"name": "Promotions"}
                ]
            counts.append(count)
        assert counts[0] == counts[1], (query, counts)
        assert counts[0] <= PAGE_MOST, counts


async def test_a_customer_with_tiers_and_strategies_costs_a_fixed_few_statements(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    counts = {}
    for customer, names in (
        ("ann", ["Personal manager", "Exclusive offers"]),
        ("bob", ["Promotions"]),
        ("cyd", ["Win-back"]),
    ):
        count, found = await statements(engine, tenant, CUSTOMER, {"id": customer})
        assert [s["name"] for s in found["customer"]["strategies"]] == names
        assert len(found["customer"]["tiers"]) == 1
        counts[customer] = count
    # Two on one connection: the tenant's settings, and the customer by id with its tiers
    # and its strategies (`service.api.loaders.CUSTOMER_CARDS`).
    assert len(set(counts.values())) == 1 and counts["ann"] <= CUSTOMER_MOST, counts
    assert counts["ann"] == 2, counts
