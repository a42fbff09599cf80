"""Row IDs are read one way everywhere: only an ID this API could have given out reaches the
database; any other names nothing (NOT_FOUND, or false from a delete), never an error of ours."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api.fields import parse_id
from tests.api.support import codes, data, post, shop

BIGGEST = 2**63 - 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", 42),
        ("0", 0),
        ("007", 7),
        (str(BIGGEST), BIGGEST),
        (str(BIGGEST + 1), None),  # past bigint: the database would refuse the parameter
        ("-1", None),
        (" 1", None),  # int() takes these four, a row id is none of them
        ("1_0", None),
        ("١", None),
        ("+1", None),
        ("1.0", None),
        ("", None),
        ("abc", None),
    ],
)
def test_parse_id(value: str, expected: int | None) -> None:
    assert parse_id(value) == expected


async def test_ids_no_row_can_have_name_nothing(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    huge = str(BIGGEST + 1)
    for query in (
        f'mutation {{ replayWebhookDelivery(id: "{huge}") {{ id }} }}',
        f'mutation {{ replayDeadDeliveries(webhookId: "{huge}") }}',
        '{ webhookDeliveries(webhookId: "1_0") { id } }',
        f'{{ webhookDeliveries(before: "{huge}") {{ id }} }}',
        '{ auditLog(before: "x") { id } }',
    ):
        assert codes(await post(engine, tenant, query)) == ["NOT_FOUND"], query
    for query in (
        f'mutation {{ deleteStrategy(id: "{huge}") }}',
        f'mutation {{ deleteWebhook(id: "{huge}") }}',
    ):
        assert list(data(await post(engine, tenant, query)).values()) == [False], query
