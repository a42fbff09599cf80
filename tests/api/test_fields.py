"""Row IDs are written and read one way everywhere (`service.db.ids`): an opaque token of the
caller's tenant and the row's kind. One of another shape is BAD_INPUT naming the argument; one
of the right shape that is not the caller's (another tenant's, another kind's, made up) names
nothing (NOT_FOUND, or false from a delete), never an error of ours."""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.db.ids import TOKEN_LENGTH, IdCodec, MalformedId, RowKind, configured_key
from tests.api.support import codes, data, post, shop

BIGGEST = 2**63 - 1
CODEC = IdCodec(secrets.token_bytes(32))


@pytest.mark.parametrize("number", [1, 2, 17, 10**12, BIGGEST])
def test_an_id_reads_back_to_its_row_in_its_tenant_and_kind_only(number: int) -> None:
    a, b = CODEC.of("a"), CODEC.of("b")
    token = a.encode(RowKind.webhook, number)
    assert len(token) == TOKEN_LENGTH and token.isascii()
    assert a.encode(RowKind.webhook, number) == token  # stable
    assert a.decode(RowKind.webhook, token) == number
    assert b.decode(RowKind.webhook, token) is None
    assert a.decode(RowKind.strategy, token) is None
    assert IdCodec(secrets.token_bytes(32)).of("a").decode(RowKind.webhook, token) is None


def test_neighbouring_rows_get_unrelated_ids() -> None:
    ids = CODEC.of("a")
    tokens = [ids.encode(RowKind.strategy, n) for n in range(1, 201)]
    assert len(set(tokens)) == 200
    assert tokens != sorted(tokens)  # no order to read counts off
    # No shared prefix: each character position takes many values across neighbours.
    assert all(len({t[i] for t in tokens}) > 20 for i in range(TOKEN_LENGTH - 1))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "42",
        str(BIGGEST),
        "x" * (TOKEN_LENGTH - 1),
        "x" * (TOKEN_LENGTH + 1),
        "a+b/" + "x" * (TOKEN_LENGTH - 4),  # standard base64, not base64url
        "é" * TOKEN_LENGTH,
        "\0" * TOKEN_LENGTH,
    ],
)
def test_a_value_of_another_shape_is_malformed(value: str) -> None:
    with pytest.raises(MalformedId):
        CODEC.of("a").decode(RowKind.strategy, value)


def test_only_the_canonical_spelling_reads() -> None:
    ids = CODEC.of("a")
    token = ids.encode(RowKind.run, 5)
    # The last character carries 2 bits of the block and 4 spare ones; setting a spare bit
    # spells the same bytes differently.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    with pytest.raises(MalformedId):
        ids.decode(RowKind.run, other)


async def test_ids_of_another_shape_are_bad_input_naming_the_argument(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    for query, argument in (
        ('mutation { replayWebhookDelivery(id: "42") { id } }', "`id`"),
        ('mutation { replayDeadDeliveries(webhookId: "1_0") }', "`webhookId`"),
        ('{ webhookDeliveries(webhookId: "x") { id } }', "`webhookId`"),
        ('{ webhookDeliveries(before: "17") { id } }', "`before`"),
        ('{ auditLog(before: "x") { id } }', "`before`"),
        ('mutation { deleteStrategy(id: "9") }', "`id`"),
        ('mutation { deleteWebhook(id: "") }', "`id`"),
        (
            '{ migrationMatrix(scheme: "value", fromRun: "1", toRun: "2") { customerCount } }',
            "`fromRun`",
        ),
    ):
        result = await post(engine, tenant, query)
        assert codes(result) == ["BAD_INPUT"], query
        assert argument in result["errors"][0]["message"], query


async def test_ids_that_name_no_row_of_the_caller_name_nothing(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    made_up = CODEC.of(tenant)  # the right shape, not the deployment's key
    webhook = made_up.encode(RowKind.webhook, 1)
    delivery = made_up.encode(RowKind.delivery, 1)
    for query in (
        f'mutation {{ replayWebhookDelivery(id: "{delivery}") {{ id }} }}',
        f'mutation {{ replayDeadDeliveries(webhookId: "{webhook}") }}',
        f'{{ webhookDeliveries(webhookId: "{webhook}") {{ id }} }}',
        f'{{ webhookDeliveries(before: "{delivery}") {{ id }} }}',
        f'{{ auditLog(before: "{made_up.encode(RowKind.audit_entry, 1)}") {{ id }} }}',
    ):
        result = await post(engine, tenant, query)
        assert codes(result) == ["NOT_FOUND"], query
    for query in (
        f'mutation {{ deleteStrategy(id: "{made_up.encode(RowKind.strategy, 1)}") }}',
        f'mutation {{ deleteWebhook(id: "{webhook}") }}',
    ):
        assert list(data(await post(engine, tenant, query)).values()) == [False], query


async def test_the_configured_key_replaces_the_stored_one(engine: AsyncEngine, tenant: str) -> None:
    """TIERWISE_ID_KEY: the ids are of that key (every process given it agrees); unset, of the
    key migration 0015 stored; one too short is refused when the settings are read."""
    await shop(engine, tenant)
    query = "{ strategies { id } }"
    stored = {s["id"] for s in data(await post(engine, tenant, query))["strategies"]}
    assert stored == {s["id"] for s in data(await post(engine, tenant, query))["strategies"]}
    secret = "a long enough secret"
    keyed = Settings(id_key=SecretStr(secret))
    mine = {s["id"] for s in data(await post(engine, tenant, query, settings=keyed))["strategies"]}
    assert len(mine) == len(stored) and not mine & stored
    ids = IdCodec(configured_key(secret)).of(tenant)
    assert all(ids.decode(RowKind.strategy, token) is not None for token in mine)
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(id_key=SecretStr("short"))  # refused when the process starts
