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
