"""`tierwise strategies list|save|delete` do what the API's strategies do, audited."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from tests.api.support import data, post, shop
from tests.support import tierwise

LISTED = '{ strategies(scheme: "value") { id tier name channel priority parameters } }'


async def test_save_list_and_delete_as_the_api_sees_them(
    engine: AsyncEngine, database: URL, tenant: str
) -> None:
    await shop(engine, tenant)

    def cli(*args: str) -> str:
        result = tierwise(database, "strategies", *args, "--tenant", tenant)
        assert result.returncode == 0, result.stderr
        return result.stdout

    saved = cli(
        "save", "--scheme", "value", "--tier", "Active", "--name", "Welcome call",
        "--channel", "phone", "--priority", "5", "--parameters", '{"minutes": 10}',
    )  # fmt: skip
    assert "saved strategy 'Welcome call' of value Active (phone, priority 5)" in saved
    api = data(await post(engine, tenant, LISTED, role=Role.viewer))["strategies"]
    ids = [s.pop("id") for s in api]
    assert {
        "tier": "Active",
        "name": "Welcome call",
        "channel": "phone",
        "priority": 5,
        "parameters": {"minutes": 10},
    } in api

    listed = json.loads(cli("list", "--scheme", "value", "--format", "json"))
    assert [(s["tier"], s["name"]) for s in listed] == [(s["tier"], s["name"]) for s in api]
    # The same opaque ids as the API's (service/db/ids.py), not the internal numbers.
    assert [s["id"] for s in listed] == ids
    assert "Welcome call" in cli("list", "--scheme", "value", "--tier", "Active")

    cli("save", "--scheme", "value", "--tier", "Active", "--name", "Welcome call",
        "--channel", "email", "--inactive")  # fmt: skip
    assert "Welcome call" not in cli("list", "--scheme", "value")
    (kept,) = [s for s in json.loads(cli("list", "--all", "--format", "json")) if not s["active"]]
    assert (kept["name"], kept["channel"]) == ("Welcome call", "email")

    assert "deleted strategy" in cli(
        "delete", "--scheme", "value", "--tier", "Active", "--name", "Welcome call"
    )
    assert "Welcome call" not in cli("list", "--all")
    async with engine.connect() as connection:
        actions = (
            await connection.scalars(
                text(
                    "SELECT action FROM audit_log WHERE tenant_id = :t AND target LIKE "
                    "'%Welcome call' ORDER BY id"
                ),
                {"t": tenant},
            )
        ).all()
    assert actions == ["strategy.create", "strategy.update", "strategy.delete"]


async def test_mistakes_say_what_and_where(engine: AsyncEngine, database: URL, tenant: str) -> None:
    await shop(engine, tenant)
    for args, message in (
        (("list", "--scheme", "nope"), "no published scheme 'nope'"),
        (
            ("save", "--scheme", "value", "--tier", "Gold", "--name", "x", "--channel", "e"),
            "scheme 'value' has no tier 'Gold'",
        ),
        (
            ("save", "--scheme", "value", "--tier", "VIP", "--name", "x", "--channel", "e",
             "--parameters", "[1]"),
            "--parameters must be a JSON object",
        ),
        (
            ("save", "--scheme", "value", "--tier", "VIP", "--name", "x", "--channel", "e",
             "--parameters", '{"note": "a\\u0000b"}'),
            "--parameters.note: text may hold neither NUL characters nor unpaired surrogates",
        ),
        (
            ("delete", "--scheme", "value", "--tier", "VIP", "--name", "Nothing"),
            "no strategy 'Nothing' of value VIP",
        ),
    ):  # fmt: skip
        result = tierwise(database, "strategies", *args, "--tenant", tenant)
        assert result.returncode == 1, (args, result.stdout)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
