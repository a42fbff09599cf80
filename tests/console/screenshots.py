"""Regenerate docs/console/*.png, the screenshots in docs/console.md:

    python -m tests.console.screenshots

Loads the demo data (2,000 customers) into a fresh database on the configured Postgres (or
the embedded one), serves it, and photographs each view in Debian's Chromium with the network
cut off, as the browser tests run it. The database is dropped afterwards."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright
from pydantic import SecretStr

from service.access.auth import Role, issue_token
from service.config import load_settings
from service.db.database import database_url
from tests.console.support import launch, load_demo, offline, run_async, serving
from tests.support import admin, create_and_migrate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
SECRET = secrets.token_urlsafe(32)
MISTAKE = """scheme value "Customer value" {
  tier VIP       when monetary(365 days) > 3000 and frequncy(365 days) >= 2
  tier Potential when frequency(365 days) <= 1
  tier Normal    otherwise
}
"""


def shoot(page: Page, name: str) -> None:
    page.wait_for_timeout(300)  # let charts finish their layout
    page.screenshot(path=DOCS / f"{name}.png", full_page=True)
    print(f"docs/console/{name}.png")


def photograph(base: str, tenant: str) -> None:
    analyst = issue_token(SECRET, tenant, Role.analyst, "screenshots")
    DOCS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        cut = offline(browser, viewport={"width": 1280, "height": 800})
        page = cut.context.new_page()
        page.goto(f"{base}/console")
        page.get_by_label("Token").fill("tw_…")
        shoot(page, "sign-in")
        page.goto(f"{base}/console#token={analyst}")
        page.get_by_role("navigation", name="Schemes").get_by_role("link", name="value").click()
        expect(page.locator("#shares-chart svg")).to_be_visible()
        expect(page.locator("#sizes-chart svg")).to_be_visible()
        expect(page.locator("#migration-chart svg")).to_be_visible()
        shoot(page, "dashboard")
        page.goto(f"{base}/console#/rules/value")
        page.get_by_role("textbox", name="Rules").click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(MISTAKE)
        page.locator(".cm-lintRange-error").hover()
        expect(page.locator(".cm-tooltip-lint")).to_be_visible()
        shoot(page, "rules-diagnostic")
        page.get_by_role("textbox", name="Rules").click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(MISTAKE.replace("frequncy", "frequency"))
        page.get_by_role("button", name="Preview").click()
        expect(page.locator(".chart.heatmap svg")).to_be_visible()
        page.get_by_role("list", name="Moving customers").locator("summary").first.click()
        shoot(page, "rules-preview")
        page.get_by_role("button", name="Publish").click()
        expect(page.get_by_role("status")).to_contain_text("Published value version 2")
        page.get_by_role("button", name="Show diff").click()
        expect(page.locator("pre.diff .added").first).to_be_visible()
        page.get_by_role("region", name="Version history").scroll_into_view_if_needed()
        page.get_by_role("region", name="Version history").screenshot(
            path=DOCS / "rules-history.png"
        )
        print("docs/console/rules-history.png")
        page.goto(f"{base}/console#/segments/value/VIP?where=recency%20%3C%3D%2030%20days")
        expect(page.get_by_role("table")).to_be_visible()
        first = page.get_by_role("table").locator("tbody a").first.inner_text()
        shoot(page, "segments")
        page.goto(f"{base}/console#/customers/{first}?scheme=value")
        expect(page.get_by_role("region", name="Explanation")).to_be_visible()
        shoot(page, "customer")
        page.goto(f"{base}/console#/strategies/value")
        expect(page.get_by_role("table")).to_be_visible()
        shoot(page, "strategies")
        page.goto(f"{base}/console#/predictions")
        expect(page.locator("#calibration-chart svg")).to_be_visible()
        shoot(page, "predictions")
        page.goto(f"{base}/graphql")
        page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
        expect(page.locator(".result-window")).to_contain_text("customerCount")
        shoot(page, "graphiql")
        browser.close()
        assert cut.refused == [], cut.refused


def main() -> None:
    settings = load_settings()
    with database_url(settings) as server:
        url = server.set(database=f"tierwise_screens_{secrets.token_hex(3)}")
        asyncio.run(create_and_migrate(url))
        try:
            tenant = "demo"
            run_async(load_demo(url, tenant, 2_000))
            served = settings.model_copy(
                update={
                    "evaluation_interval": 0,
                    "webhook_poll_interval": 0,
                    "jwt_secret": SecretStr(SECRET),
                }
            )
            with serving(url, served) as base:
                photograph(base, tenant)
        finally:
            asyncio.run(admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
