"""`textValues`: what a text field holds in the data, so that rules compare it with values
that exist (`gender = "F"` matched nobody where the data says `female`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from tests.api.support import codes, data, post, shop

VALUES = (
    "query ($m: String!, $n: Int) { textValues(metric: $m, first: $n) { value customerCount } }"
)


async def test_values_with_counts_most_common_first(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    found = data(await post(engine, tenant, VALUES, {"m": "region", "n": 1}, role=Role.viewer))
    assert found["textValues"] == [{"value": "east", "customerCount": 2}]
    assert data(await post(engine, tenant, VALUES, {"m": "gender"}))["textValues"] == []


async def test_only_text_fields_have_values(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    numeric = await post(engine, tenant, VALUES, {"m": "monetary"})
    assert codes(numeric) == ["BAD_INPUT"]
    assert "the text fields are gender, industry, occupation, region" in str(numeric["errors"])
    assert codes(await post(engine, tenant, VALUES, {"m": "regoin"})) == ["BAD_RULE"]
    assert codes(await post(engine, tenant, VALUES, {"m": "region", "n": -1})) == ["BAD_INPUT"]
