"""The customer card says when a `keep` tier holds a customer whose condition stopped holding:
without it the page showed a member of Gold beside a Gold condition that is false. A module
of its own: it publishes a scheme, which the other pages' tests do not expect."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from service.access.auth import Role
from tests.console.support import Served, api, sign_in

PUBLISH = """mutation ($s: String!) { publishScheme(key: "hold", source: $s) { changed } }"""
QUALIFIED = "tier Gold when frequency >= 1 keep 90 days\ntier Rest otherwise\n"
STOPPED = "tier Gold when frequency >= 100000 keep 90 days\ntier Rest otherwise\n"


def test_the_card_shows_a_kept_tier_and_the_clauses_units(page: Page, served: Served) -> None:
    api(served, PUBLISH, {"s": QUALIFIED})  # evaluated: every buyer qualifies for Gold
    api(served, PUBLISH, {"s": STOPPED})  # no one qualifies now; Gold keeps them 90 days
    members = api(
        served, '{ customers(scheme: "hold", tier: "Gold", first: 1) { edges { node { id } } } }'
    )
    customer = members["customers"]["edges"][0]["node"]["id"]
    explanation = api(
        served,
        """query ($c: ID!) { explain(customer: $c, scheme: "hold") {
          tier tiers { name kept clause { metric actual expected unit } } } }""",
        {"c": customer},
    )["explain"]
    gold = explanation["tiers"][0]
    assert explanation["tier"] == "Gold" and gold["kept"] is not None
    assert gold["kept"].startswith("kept: qualified last on ")
    sign_in(page, served, served.keys[Role.viewer], f"#/customers/{customer}?scheme=hold")
    item = page.get_by_role("region", name="Explanation").locator('li[data-tier="Gold"]')
    expect(item.locator(".kept")).to_have_text(gold["kept"])
    # frequency is in orders: after the customer's value and after the rule's.
    clause = gold["clause"]
    assert clause["unit"] == "orders"
    expect(item.locator(".values")).to_have_text(
        f" frequency is {clause['actual']} orders (rule: >= {clause['expected']} orders)"
    )
