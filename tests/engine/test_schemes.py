from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl import RuleError
from service.db.tables import scheme_versions
from service.db.tables import schemes as schemes_table
from service.engine import schemes
from service.errors import UserError

VALUE = """
scheme value "Customer value" {
  tier VIP when monetary > 5000 and frequency >= 2
  tier Normal otherwise
}
"""


async def test_publish_stores_a_version_and_makes_it_current(
    engine: AsyncEngine, tenant: str
) -> None:
    async with engine.begin() as connection:
        published = await schemes.publish(connection, tenant, VALUE, file="value.rules")
    assert published.changed == ("value",)
    (scheme,) = published.schemes
    assert (scheme.key, scheme.title, scheme.version, scheme.tiers) == (
        "value",
        "Customer value",
        1,
        ("VIP", "Normal"),
    )


async def test_publishing_the_same_rules_again_creates_no_version(
    engine: AsyncEngine, tenant: str
) -> None:
    async with engine.begin() as connection:
        await schemes.publish(connection, tenant, VALUE)
        again = await schemes.publish(connection, tenant, "  " + VALUE.replace("  tier", "tier"))
        changed = await schemes.publish(connection, tenant, VALUE.replace("5000", "6000"))
        versions = (
            await connection.execute(
                select(scheme_versions.c.version).where(scheme_versions.c.tenant_id == tenant)
            )
        ).scalars()
        assert again.changed == ()
        assert changed.changed == ("value",) and changed.schemes[0].version == 2
        assert sorted(versions) == [1, 2]
        current = await schemes.find(connection, tenant, "value")
        assert "6000" in current.source


async def test_a_bare_list_needs_a_scheme_key(engine: AsyncEngine, tenant: str) -> None:
    bare = "tier Big when monetary > 100\ntier Small otherwise\n"
    async with engine.begin() as connection:
        with pytest.raises(UserError, match="--scheme KEY"):
            await schemes.publish(connection, tenant, bare, file="size.rules")
        published = await schemes.publish(connection, tenant, bare, scheme_key="size")
    assert published.schemes[0].key == "size"
    assert published.schemes[0].source.startswith("scheme size {")


async def test_rules_may_use_tiers_of_published_schemes_but_not_in_a_cycle(
    engine: AsyncEngine, tenant: str
) -> None:
    async with engine.begin() as connection:
        await schemes.publish(connection, tenant, VALUE)
        await schemes.publish(
            connection,
            tenant,
            "scheme care { tier Key when in tier value.VIP\n tier Rest otherwise }",
        )
        with pytest.raises(RuleError, match="cycle"):
            await schemes.publish(
                connection,
                tenant,
                "scheme value { tier VIP when in tier care.Key\n tier Normal otherwise }",
            )
        keys = [s.key for s in await schemes.current(connection, tenant)]
    assert keys == ["value", "care"]  # dependencies first


async def test_bad_rules_publish_nothing(engine: AsyncEngine, tenant: str) -> None:
    with pytest.raises(RuleError, match="monetory"):
        async with engine.begin() as connection:
            await schemes.publish(connection, tenant, "scheme x { tier A when monetory > 1 }")
    async with engine.connect() as connection:
        assert await schemes.current(connection, tenant) == []


async def test_a_version_stored_with_two_tiers_of_one_name_stays_loadable_and_replaceable(
    engine: AsyncEngine, tenant: str
) -> None:
    """Such versions were published with a warning before it became an error; refusing to
    load them would block every import and the publishing of the fix."""
    twice = "scheme value {\n  tier VIP when monetary > 5000\n  tier VIP when frequency >= 9\n}\n"
    with pytest.raises(RuleError, match="another tier is already named `VIP`"):
        async with engine.begin() as connection:
            await schemes.publish(connection, tenant, twice)
    async with engine.begin() as connection:
        await connection.execute(
            scheme_versions.insert().values(
                tenant_id=tenant, scheme_key="value", version=1, source=twice, tiers=["VIP", "VIP"]
            )
        )
        await connection.execute(
            schemes_table.insert().values(tenant_id=tenant, key="value", current_version=1)
        )
        (loaded,) = await schemes.current(connection, tenant)
        assert loaded.tiers == ("VIP", "VIP")
        fixed = await schemes.publish(connection, tenant, VALUE)
    assert fixed.changed == ("value",) and fixed.schemes[0].tiers == ("VIP", "Normal")


def _big_rules(tiers: int) -> str:
    lines = [f"  tier T{n} when frequency > {n} and monetary > {n}" for n in range(tiers)]
    return "scheme big {\n" + "\n".join(lines) + "\n  tier Rest otherwise\n}\n"


async def test_long_rule_text_is_parsed_while_the_event_loop_serves(
    engine: AsyncEngine, tenant: str
) -> None:
    """The probe's 493 kB `where` blocked the event loop (every request of the process) for
    4.2 s while it was parsed and compiled. Text past `OFF_LOOP_CHARS` is worked on in a
    thread: other coroutines keep running meanwhile (here, a ticker turns many times while a
    long file is parsed); short text is parsed at once, with no thread hop."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        big = _big_rules(2000)
        assert len(big) > schemes.OFF_LOOP_CHARS
        before = ticks
        parsed = await schemes.rule_work(len(big), schemes.parse_for_publishing, big, "big", None)
        assert ticks - before >= 10
        assert len(parsed.schemes[0].tiers) == 2001
        small = _big_rules(3)
        before = ticks
        await schemes.rule_work(len(small), schemes.parse_for_publishing, small, "small", None)
        assert ticks == before
    finally:
        stop.set()
        await running
    # Publishing a file that long takes the same path, to the same result.
    long = _big_rules(300)
    assert len(long) > schemes.OFF_LOOP_CHARS
    async with engine.begin() as connection:
        published = await schemes.publish(connection, tenant, long)
    assert published.changed == ("big",) and len(published.schemes[0].tiers) == 301
