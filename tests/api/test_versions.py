"""A scheme's version history (who published what when) and the diff between versions."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from tests.api.support import codes, data, post, shop

PUBLISH = """mutation ($source: String!) {
  publishScheme(key: "value", source: $source) { scheme { version } } }"""
VERSIONS = """query { schemeVersions(scheme: "value") {
  version publishedBy current tiers source } }"""
DIFF = """query ($from: Int!, $to: Int!) {
  schemeDiff(scheme: "value", fromVersion: $from, toVersion: $to) {
    addedTiers removedTiers lines { change text fromLine toLine } } }"""


async def test_history_says_who_published_each_version_and_the_diff_what_changed(
    engine: AsyncEngine, tenant: str
) -> None:
    await shop(engine, tenant)
    first = data(await post(engine, tenant, VERSIONS, role=Role.viewer))["schemeVersions"]
    source = first[0]["source"]
    changed = source.replace("tier Active when recency <= 90 days", "tier Gold when monetary > 100")
    assert changed != source
    published = await post(engine, tenant, PUBLISH, {"source": changed}, role=Role.analyst)
    assert data(published)["publishScheme"]["scheme"]["version"] == 2

    history = data(await post(engine, tenant, VERSIONS, role=Role.viewer))["schemeVersions"]
    assert [(v["version"], v["current"]) for v in history] == [(2, True), (1, False)]
    assert history[0]["publishedBy"] == "test"  # the JWT's subject (tests.api.support)
    assert history[1]["publishedBy"] == "tierwise"  # the service, publishing the fixture
    assert history[0]["tiers"] == ["VIP", "Gold", "Normal"]

    diff = data(await post(engine, tenant, DIFF, {"from": 1, "to": 2}, role=Role.viewer))
    diff = diff["schemeDiff"]
    assert (diff["addedTiers"], diff["removedTiers"]) == (["Gold"], ["Active"])
    changes = [(line["change"], " ".join(line["text"].split())) for line in diff["lines"]]
    assert ("REMOVED", "tier Active when recency <= 90 days") in changes
    assert ("ADDED", "tier Gold when monetary > 100") in changes
    kept = [line for line in diff["lines"] if line["change"] == "SAME"]
    assert len(kept) == len(source.splitlines()) - 1
    # Line numbers point into each text.
    old, new = source.splitlines(), history[0]["source"].splitlines()
    for line in diff["lines"]:
        if line["fromLine"] is not None:
            assert old[line["fromLine"] - 1] == line["text"]
        if line["toLine"] is not None:
            assert new[line["toLine"] - 1] == line["text"]


async def test_unknown_schemes_and_versions_are_not_found(engine: AsyncEngine, tenant: str) -> None:
    await shop(engine, tenant)
    missing = await post(engine, tenant, 'query { schemeVersions(scheme: "nope") { version } }')
    assert codes(missing) == ["NOT_FOUND"]
    result = await post(engine, tenant, DIFF, {"from": 1, "to": 3})
    assert codes(result) == ["NOT_FOUND"]
    assert "has no version 3; its versions are 1 to 1" in result["errors"][0]["message"]
