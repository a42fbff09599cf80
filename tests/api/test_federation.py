from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from service.api.schema import sdl
from service.config import Settings
from tests.api.support import codes, data, post, shop

FEDERATED = Settings(federation=True)


async def test_the_subgraph_describes_customer_as_an_entity(
    engine: AsyncEngine, tenant: str
) -> None:
    service = data(await post(engine, tenant, "{ _service { sdl } }", settings=FEDERATED))
    subgraph = service["_service"]["sdl"]
    assert "specs.apollo.dev/federation/v2" in subgraph
    assert 'type Customer @key(fields: "id", resolvable: true)' in subgraph
    # The plain schema (the published contract) is untouched by it.
    assert "@key" not in sdl() and "_service" not in sdl()


async def test_a_gateway_resolves_customers_by_reference(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    query = """query ($representations: [_Any!]!) {
      _entities(representations: $representations) {
        ... on Customer { id name tiers { scheme tier } }
      }
    }"""
    representations = [
        {"__typename": "Customer", "id": "bob"},
        {"__typename": "Customer", "id": "nobody"},
        {"__typename": "Customer", "id": "ann"},
    ]
    found = data(
        await post(engine, tenant, query, {"representations": representations}, settings=FEDERATED)
    )
    assert found["_entities"] == [
        {"id": "bob", "name": "Bob", "tiers": [{"scheme": "value", "tier": "Active"}]},
        None,
        {"id": "ann", "name": "Ann", "tiers": [{"scheme": "value", "tier": "VIP"}]},
    ]


async def test_without_federation_there_is_no_subgraph_api(
    engine: AsyncEngine, tenant: str
) -> None:
    result = await post(engine, tenant, "{ _service { sdl } }")
    assert "Cannot query field '_service'" in result["errors"][0]["message"]


async def test_entities_need_the_right_to_read_customers(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    query = """query ($representations: [_Any!]!) {
      _entities(representations: $representations) { ... on Customer { id name } }
    }"""
    representations = [{"__typename": "Customer", "id": "ann"}]
    variables = {"representations": representations}
    refused = await post(engine, tenant, query, variables, settings=FEDERATED, role=Role.ingest)
    assert codes(refused) == ["FORBIDDEN"]
    # A viewer reads the customer, without personal data.
    seen = await post(engine, tenant, query, variables, settings=FEDERATED, role=Role.viewer)
    assert data(seen)["_entities"] == [{"id": "ann", "name": None}]


async def test_a_representation_of_no_entity_here_is_bad_input(
    engine: AsyncEngine, tenant: str
) -> None:
    """The probe's unknown `_entities` typename failed as INTERNAL."""
    await shop(engine, tenant)
    query = """query ($representations: [_Any!]!) {
      _entities(representations: $representations) { ... on Customer { id } }
    }"""
    for wrong in (
        {"__typename": "Product", "id": "p1"},
        {"id": "ann"},
        {"__typename": "Customer"},
        {"__typename": "Customer", "id": 7},
        "Customer:ann",
    ):
        variables = {"representations": [{"__typename": "Customer", "id": "ann"}, wrong]}
        result = await post(engine, tenant, query, variables, settings=FEDERATED)
        assert codes(result) == ["BAD_INPUT"], wrong
        assert result["errors"][0]["message"].startswith("representations[1] is not a Customer")


async def test_no_field_names_are_suggested_when_introspection_is_off(
    engine: AsyncEngine, tenant: str
) -> None:
    """With introspection off, "Did you mean 'apiKeys'?" told the schema name by name."""
    for query in ("{ apiKey { id } }", "{ customers(firts: 1) { totalCount } }"):
        told = await post(engine, tenant, query)
        assert "Did you mean" in told["errors"][0]["message"]
        closed = await post(engine, tenant, query, settings=Settings(introspection=False))
        message = closed["errors"][0]["message"]
        assert "Did you mean" not in message and message.startswith(("Cannot query", "Unknown"))
