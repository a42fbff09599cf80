"""One server on demo data and one browser for a module of browser tests (starting Chromium
and loading data are what a browser test costs; each test gets a fresh browser context).
Module scope: Playwright's synchronous API keeps an event loop running while the browser is
open, which the asynchronous tests of other modules cannot share."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy.engine import URL

from service.config import Settings
from tests.api.support import with_secret
from tests.console.support import (
    CHROMIUM,
    Offline,
    Served,
    launch,
    load_demo,
    offline,
    run_async,
    serving,
)

CUSTOMERS = 400
# Generous waits: the machine is shared, and a page's readiness is what is asserted, not its
# speed (no timed tests).
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def served(database: URL) -> Iterator[Served]:
    tenant = f"t_{secrets.token_hex(6)}"
    keys = run_async(load_demo(database, tenant, CUSTOMERS))
    settings = with_secret(Settings(evaluation_interval=0, webhook_poll_interval=0))
    with serving(database, settings) as base:
        yield Served(base, database, tenant, keys)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no {CHROMIUM}: install Debian's browser, `apt-get install chromium` (README)")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def cut_off(browser: Browser) -> Iterator[Offline]:
    """A browser context with the network cut off: only this machine answers. A test fails
    if the page tried to reach anything else."""
    context = offline(browser, viewport={"width": 1280, "height": 900})
    yield context
    context.context.close()
    assert context.refused == [], f"the page tried to reach the network: {context.refused}"


@pytest.fixture
def page(cut_off: Offline) -> Page:
    page = cut_off.context.new_page()
    page.set_default_timeout(30_000)
    return page
