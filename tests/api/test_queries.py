from __future__ import annotations

import base64
import json
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.config import Settings
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.ids import codec
from service.engine import schemes
from tests.api.support import bearer, codes, data, post, shop, with_secret

CARD = """
query ($id: ID!) {
  customer(id: $id) {
    id name region
    tiers { scheme tier version }
    strategies { name channel priority }
    metrics { frequency monetary recency }
    history { scheme fromTier toTier trigger customerId }
  }
}
"""


async def test_a_customer_with_tiers_strategies_metrics_and_history(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    customer = data(await post(engine, tenant, CARD, {"id": "ann"}))["customer"]
    assert customer["id"] == "ann" and customer["name"] == "Ann" and customer["region"] == "east"
    assert customer["tiers"] == [{"scheme": "value", "tier": "VIP", "version": 1}]
    assert [s["name"] for s in customer["strategies"]] == ["Personal manager", "Exclusive offers"]
    assert customer["metrics"]["frequency"] == 2
    assert Decimal(customer["metrics"]["monetary"]) == Decimal("5500")
    assert customer["metrics"]["recency"] == 10
    assert customer["history"] == [
        {
            "scheme": "value",
            "fromTier": None,
            "toTier": "VIP",
            "trigger": "manual",
            "customerId": "ann",
        }
    ]


async def test_an_unknown_customer_is_null(engine: AsyncEngine, tenant: str) -> None:
    assert data(await post(engine, tenant, CARD, {"id": "nobody"})) == {"customer": None}


async def test_tenants_never_see_each_other(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    other = f"{tenant}x"
    assert data(await post(engine, other, CARD, {"id": "ann"})) == {"customer": None}


async def test_explain_traces_every_tier_with_the_customers_values(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    query = """
    query ($id: ID!, $scheme: String!) {
      customer(id: $id) { explain(scheme: $scheme) {
        scheme tier
        tiers { name result matched clause { text result children { metric actual operator } } }
      } }
    }
    """
    explained = data(await post(engine, tenant, query, {"id": "bob", "scheme": "value"}))
    explanation = explained["customer"]["explain"]
    assert explanation["tier"] == "Active"
    assert [(t["name"], t["result"], t["matched"]) for t in explanation["tiers"]] == [
        ("VIP", "FALSE", False),
        ("Active", "TRUE", True),
        ("Normal", "OTHERWISE", False),
    ]
    vip = explanation["tiers"][0]["clause"]
    assert vip["children"][0] == {
        "metric": "monetary(365 days)",
        "actual": "40.0000",
        "operator": ">",
    }
    missing = await post(engine, tenant, query, {"id": "bob", "scheme": "nope"})
    assert codes(missing) == ["NOT_FOUND"]
    assert missing["errors"][0]["path"] == ["customer", "explain"]
    root = 'query ($id: ID!) { explain(customer: $id, scheme: "value") { tier } }'
    assert data(await post(engine, tenant, root, {"id": "bob"})) == {"explain": {"tier": "Active"}}
    unknown = await post(engine, tenant, root, {"id": "nobody"})
    assert codes(unknown) == ["NOT_FOUND"]
    assert unknown["errors"][0]["message"] == "no customer 'nobody'"


async def test_explain_shows_the_definitions_with_their_values(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    async with engine.begin() as connection:
        await schemes.publish(
            connection,
            tenant,
            "define aov = monetary(90 days) / frequency(90 days)\n"
            "scheme basket {\n"
            "  define big = aov > 1000\n"
            "  tier Big when big\n"
            "  tier Declining when monetary(90 days) < 0.5 * monetary(90 days, 90 days ago)\n"
            "  tier Other otherwise\n}\n",
        )
    query = """
    query ($id: ID!) {
      explain(customer: $id, scheme: "basket") {
        tier definitions { name text value result }
      }
    }
    """
    ann = data(await post(engine, tenant, query, {"id": "ann"}))["explain"]
    assert ann == {
        "tier": "Big",
        "definitions": [
            {
                "name": "aov",
                "text": "monetary(90 days) / frequency(90 days)",
                "value": "2750.0000000000",
                "result": None,
            },
            {
                "name": "big",
                "text": "monetary(90 days) / frequency(90 days) > 1000",  # `aov` spelt out
                "value": None,
                "result": "TRUE",
            },
        ],
    }
    cyd = data(await post(engine, tenant, query, {"id": "cyd"}))["explain"]
    assert cyd["tier"] == "Other"
    assert cyd["definitions"][0]["value"] is None  # no orders in 90 days: 0 / 0 is unknown
    assert cyd["definitions"][1]["result"] == "UNKNOWN"


PAGE = """
query ($scheme: String, $tier: String, $where: String, $first: Int, $after: String) {
  customers(scheme: $scheme, tier: $tier, where: $where, first: $first, after: $after) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}
"""


def ids(result: dict[str, object]) -> list[str]:
    page = data(result)["customers"]
    return [edge["node"]["id"] for edge in page["edges"]]


async def test_customers_page_with_keyset_cursors(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    first = data(await post(engine, tenant, PAGE, {"first": 2}))["customers"]
    assert first["totalCount"] == 3
    assert [e["node"]["id"] for e in first["edges"]] == ["ann", "bob"]
    assert first["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "endCursor": first["edges"][-1]["cursor"],
    }
    after = first["pageInfo"]["endCursor"]
    second = data(await post(engine, tenant, PAGE, {"first": 2, "after": after}))["customers"]
    assert [e["node"]["id"] for e in second["edges"]] == ["cyd"]
    assert second["pageInfo"]["hasNextPage"] is False
    assert second["pageInfo"]["hasPreviousPage"] is True
    # Anything this API did not give out is BAD_INPUT, never INTERNAL: the probe's NUL and
    # lone surrogate, a number past bigint, a cursor of the old (internal id) form.
    for forged in (
        "not-a-cursor",
        base64.urlsafe_b64encode(b"customer-id:a\x00b").decode(),
        base64.urlsafe_b64encode(b"customer:99999999999999999999999").decode(),
        base64.urlsafe_b64encode(b"customer-id:").decode(),
    ):
        bad = await post(engine, tenant, PAGE, {"after": forged})
        assert codes(bad) == ["BAD_INPUT"], forged
    # A lone surrogate can only travel as a JSON escape (`json.dumps` writes one).
    app = create_app(engine, settings=with_secret())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        surrogate = await client.post(
            "/graphql",
            content=json.dumps({"query": PAGE, "variables": {"after": "\ud800"}}),
            headers={**bearer(tenant), "Content-Type": "application/json"},
        )
    assert codes(surrogate.json()) == ["BAD_INPUT"]


async def test_first_is_capped_by_the_page_size_limit(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    capped = await post(engine, tenant, PAGE, {"first": 1000}, settings=Settings(max_page_size=2))
    assert ids(capped) == ["ann", "bob"]


async def test_customers_of_a_tier_and_by_a_where_condition(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    assert ids(await post(engine, tenant, PAGE, {"scheme": "value", "tier": "VIP"})) == ["ann"]
    assert ids(await post(engine, tenant, PAGE, {"scheme": "value"})) == ["ann", "bob", "cyd"]
    where = 'monetary > 50 and region = "east"'
    assert ids(await post(engine, tenant, PAGE, {"where": where})) == ["ann", "cyd"]
    both = {"scheme": "value", "tier": "Normal", "where": 'region = "east"'}
    assert ids(await post(engine, tenant, PAGE, both)) == ["cyd"]
    in_tier = {"where": "in tier value.Active or monetary > 5000"}
    assert ids(await post(engine, tenant, PAGE, in_tier)) == ["ann", "bob"]
    unknown = await post(engine, tenant, PAGE, {"scheme": "value", "tier": "Gold"})
    assert codes(unknown) == ["NOT_FOUND"]
    assert codes(await post(engine, tenant, PAGE, {"tier": "VIP"})) == ["BAD_INPUT"]


async def test_a_bad_where_is_a_bad_rule_error_with_its_position(
    engine: AsyncEngine, tenant: str
) -> None:
    result = await post(engine, tenant, PAGE, {"where": "monetary > 10 and monetory < 5"})
    assert codes(result) == ["BAD_RULE"]
    (diagnostic,) = result["errors"][0]["extensions"]["diagnostics"]
    assert (diagnostic["line"], diagnostic["column"]) == (1, 19)
    assert diagnostic["severity"] == "ERROR"  # spelled as the `Severity` enum, as in checkRules
    assert "monetory" in diagnostic["message"]
    assert "did you mean `monetary`" in diagnostic["message"]
    syntax = await post(engine, tenant, PAGE, {"where": "monetary >"})
    assert codes(syntax) == ["BAD_RULE"]


async def test_segments_schemes_strategies_and_metrics(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    query = """{
      segments { scheme tier customerCount customerShare revenue revenueShare
                 strategies { name } }
      schemes { key title version tiers usesPopulation }
      strategies(scheme: "value", tier: "VIP") { name priority }
      metrics { name type }
    }"""
    found = data(await post(engine, tenant, query))
    segments = {s["tier"]: s for s in found["segments"]}
    assert [s["tier"] for s in found["segments"]] == ["VIP", "Active", "Normal"]
    assert segments["VIP"]["customerCount"] == 1
    assert Decimal(segments["VIP"]["revenue"]) == Decimal("5500")
    assert segments["VIP"]["revenueShare"] == "0.975177"  # 5500 / 5640, to 6 places
    assert [s["name"] for s in segments["VIP"]["strategies"]] == [
        "Personal manager",
        "Exclusive offers",
    ]
    assert found["schemes"] == [
        {
            "key": "value",
            "title": "Customer value",
            "version": 1,
            "tiers": ["VIP", "Active", "Normal"],
            "usesPopulation": False,
        }
    ]
    assert [s["name"] for s in found["strategies"]] == ["Personal manager", "Exclusive offers"]
    assert {"name": "monetary", "type": "NUMBER"} in found["metrics"]


async def test_check_rules_reports_errors_and_warnings_without_writing(
    engine: AsyncEngine, tenant: str
) -> None:
    query = """query ($source: String!, $key: String) {
      checkRules(source: $source, key: $key) {
        ok diagnostics { line column severity code message hint }
      }
    }"""
    good = data(await post(engine, tenant, query, {"source": "scheme s {\n tier A otherwise\n}"}))
    assert good["checkRules"] == {"ok": True, "diagnostics": []}
    source = "scheme s {\n tier A when x > 1\n tier B when y >\n tier C when 1 < 2\n}"
    bad = data(await post(engine, tenant, query, {"source": source}))
    assert bad["checkRules"]["ok"] is False
    # Every error, each with its stable code.
    assert [(d["line"], d["severity"], d["code"]) for d in bad["checkRules"]["diagnostics"]] == [
        (2, "ERROR", "unknown-metric"),
        (4, "ERROR", "syntax-error"),
        (4, "ERROR", "no-metric"),
    ]
    # A bare list of tiers checked as scheme `s` (as publishScheme would take it) cannot read
    # its own tiers; checked without a key it may.
    tiers = "tier A when in tier s.B\ntier B otherwise\n"
    keyed = data(await post(engine, tenant, query, {"source": tiers, "key": "s"}))
    assert [d["code"] for d in keyed["checkRules"]["diagnostics"]] == ["self-reference"]
    empty = data(await post(engine, tenant, query, {"source": "\n"}))["checkRules"]
    assert empty["ok"] is True and empty["diagnostics"][0]["code"] == "empty-file"
    schemes = data(await post(engine, tenant, "{ schemes { key } }"))
    assert schemes == {"schemes": []}


async def test_preview_rules_counts_tiers_and_moves(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    query = """query ($source: String!, $asOf: Date) {
      previewRules(source: $source, asOf: $asOf) {
        schemes {
          scheme
          tiers { tier customerCount revenue }
          moves { fromTier toTier customerCount }
        }
      }
    }"""
    source = 'scheme value {\n tier East when region = "east"\n tier Rest otherwise\n}'
    preview = data(await post(engine, tenant, query, {"source": source}))["previewRules"]
    (scheme,) = preview["schemes"]
    assert [(t["tier"], t["customerCount"]) for t in scheme["tiers"]] == [("East", 2), ("Rest", 1)]
    assert sum(m["customerCount"] for m in scheme["moves"]) == 3
    bad = await post(engine, tenant, query, {"source": "scheme value {\n tier A when x > 1\n}"})
    assert codes(bad) == ["BAD_RULE"]
    assert bad["errors"][0]["extensions"]["diagnostics"][0]["line"] == 2
    future = await post(engine, tenant, query, {"source": source, "asOf": "2999-01-01"})
    assert codes(future) == ["BAD_INPUT"]
    assert "is in the future" in future["errors"][0]["message"]
    assert bad["errors"][0]["extensions"]["diagnostics"][0]["code"] == "unknown-metric"


async def test_preview_rules_takes_a_bare_list_of_tiers_with_a_key(
    engine: AsyncEngine, tenant: str
) -> None:
    """As `tierwise rules preview --scheme KEY` does, and publishScheme(key: ...)."""
    await shop(engine, tenant)
    query = """query ($source: String!, $key: String) {
      previewRules(source: $source, key: $key) { schemes { scheme tiers { tier customerCount } } }
    }"""
    tiers = 'tier East when region = "east"\ntier Rest otherwise\n'
    preview = data(await post(engine, tenant, query, {"source": tiers, "key": "area"}))
    assert preview["previewRules"]["schemes"] == [
        {
            "scheme": "area",
            "tiers": [{"tier": "East", "customerCount": 2}, {"tier": "Rest", "customerCount": 1}],
        }
    ]
    unkeyed = await post(engine, tenant, query, {"source": tiers})
    assert codes(unkeyed) == ["BAD_INPUT"]
    assert "bare list of tiers" in unkeyed["errors"][0]["message"]


async def test_a_page_costs_the_same_round_trips_whatever_its_size(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    more = [{"customer_id": f"x{i:02}", "region": "north"} for i in range(20)]
    await import_rows(engine, Kind.customers, tenant, enumerate(more), source="test")
    query = """query ($first: Int) { customers(first: $first) { edges { node {
      id tiers { tier } strategies { name } metrics { monetary } history { toTier }
      explain(scheme: "value") { tier }
    } } } }"""
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    async def round_trips(size: int) -> int:
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            assert len(ids_of(await post(engine, tenant, query, {"first": size}))) == size
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    await codec(engine, None)  # an engine's first request reads the id key, once
    assert await round_trips(2) == await round_trips(20)


def ids_of(result: dict[str, object]) -> list[str]:
    return [edge["node"]["id"] for edge in data(result)["customers"]["edges"]]


async def test_with_authentication_off_the_default_tenant_is_read(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    app = create_app(engine, settings=Settings(default_tenant=tenant, auth_required=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        response = await client.post("/graphql", json={"query": '{ customer(id: "ann") { id } }'})
    assert response.json() == {"data": {"customer": {"id": "ann"}}}


UNKNOWN_SCHEME = {
    "segments": '{ segments(scheme: "nope") { tier } }',
    "strategies": '{ strategies(scheme: "nope") { name } }',
    "customers": '{ customers(scheme: "nope") { totalCount } }',
    "explain": '{ explain(customer: "ann", scheme: "nope") { tier } }',
    "customer.explain": '{ customer(id: "ann") { explain(scheme: "nope") { tier } } }',
    "customer.history": '{ customer(id: "ann") { history(scheme: "nope") { toTier } } }',
    "evaluateScheme": 'mutation { evaluateScheme(scheme: "nope") { changed } }',
}


@pytest.mark.parametrize("field", sorted(UNKNOWN_SCHEME))
async def test_an_unknown_scheme_is_not_found_wherever_a_scheme_is_named(
    engine: AsyncEngine, tenant: str, field: str
) -> None:
    await shop(engine, tenant)
    result = await post(engine, tenant, UNKNOWN_SCHEME[field])
    assert codes(result) == ["NOT_FOUND"]
    assert "no published scheme 'nope'" in result["errors"][0]["message"]


async def test_a_known_scheme_without_changes_or_strategies_is_an_empty_list(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    async with engine.begin() as connection:
        await schemes.publish(connection, tenant, "scheme quiet {\n  tier All otherwise\n}\n")
        await schemes.publish(connection, tenant, "scheme empty {\n}\n")
    query = """{ strategies(scheme: "quiet") { name }
      customer(id: "ann") { history(scheme: "quiet") { toTier } }
      segments(scheme: "empty") { tier } }"""
    assert data(await post(engine, tenant, query)) == {
        "strategies": [],
        "customer": {"history": []},
        "segments": [],
    }


async def test_a_page_of_none_counts_but_offers_no_next_page(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    query = """query ($after: String) { customers(first: 0, after: $after) {
      totalCount edges { cursor } pageInfo { hasNextPage startCursor endCursor } } }"""
    page = data(await post(engine, tenant, query))["customers"]
    assert page == {
        "totalCount": 3,
        "edges": [],
        "pageInfo": {"hasNextPage": False, "startCursor": None, "endCursor": None},
    }
    after = data(await post(engine, tenant, PAGE, {"first": 1}))["customers"]["pageInfo"]
    rest = data(await post(engine, tenant, query, {"after": after["endCursor"]}))["customers"]
    assert rest["pageInfo"]["hasNextPage"] is False and rest["edges"] == []


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ customers(first: 1) { totalCount", {}),  # does not parse
        ("{ nope }", {}),  # no such field
        ('{ customers(first: "x") { totalCount } }', {}),  # an argument of the wrong type
        ("query ($n: Int!) { customers(first: $n) { totalCount } }", {"n": "x"}),
        ("query ($n: Int!) { metrics { name } }", {"n": 1}),  # a variable never used
    ],
)
async def test_a_query_that_does_not_parse_or_validate_is_bad_query(
    engine: AsyncEngine, tenant: str, query: str, variables: dict[str, object]
) -> None:
    result = await post(engine, tenant, query, variables)
    assert codes(result) == ["BAD_QUERY"]
