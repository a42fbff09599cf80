"""What the browser tests and the screenshot script share: demo data in a tenant, the app
served by uvicorn in a thread on a free loopback port, and Debian's Chromium driven by
Playwright with every request off this machine refused (the console must work offline)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, expect
from sqlalchemy.engine import URL

from service.access import audit
from service.access.auth import Role, create_key
from service.app import create_app
from service.config import Settings
from service.data import demo_data
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.database import create_engine, tenant_transaction
from service.db.tables import tenants
from service.engine import evaluation, schemes, strategies
from service.engine.predictions.tenant import fit_tenant
from service.engine.templates import TEMPLATES
from tests.api.support import token
from tests.support import free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's `chromium` package (README: running the tests)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = ("http://127.0.0.1:", "ws://127.0.0.1:")
T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from a synchronous test (in a thread of its own: Playwright's
    synchronous API keeps an event loop running in the test's thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def load_demo(url: URL, tenant: str, customers: int) -> dict[Role, str]:
    """A new tenant with the demo's data (``customers`` of them), the prediction models fitted,
    the seven templates published with their strategies and evaluated, as `tierwise demo` does;
    returns an API key for the viewer and analyst roles."""
    engine = create_engine(url, pool_size=2, max_overflow=2)
    try:
        async with engine.begin() as connection:
            await connection.execute(tenants.insert().values(id=tenant, name=tenant))
        config = demo_data.DemoConfig(customers=customers, seed=7)
        await demo_data.set_up_tenant(engine, tenant, config)
        for kind, rows in (
            (Kind.customers, demo_data.customer_rows(config)),
            (Kind.orders, demo_data.order_rows(config)),
            (Kind.events, demo_data.event_rows(config)),
        ):
            await import_rows(engine, kind, tenant, enumerate(rows, 2), source="demo")
        async with tenant_transaction(engine, tenant, batch=True) as connection:
            await fit_tenant(connection, tenant, dt.datetime.now(dt.UTC))
        keys: dict[Role, str] = {}
        async with tenant_transaction(engine, tenant) as connection:
            for template in TEMPLATES.values():
                await schemes.publish(connection, tenant, template.source, file=template.file)
                await strategies.install_template(connection, tenant, template)
            for role in (Role.viewer, Role.analyst):
                _, keys[role] = await create_key(connection, tenant, role, audit.SERVICE)
        await evaluation.evaluate_all(engine, tenant, trigger="demo")
        return keys
    finally:
        await engine.dispose()


@dataclass
class Served:
    base: str
    database: URL
    tenant: str
    keys: dict[Role, str] = field(default_factory=dict)


@contextmanager
def serving(url: URL, settings: Settings) -> Iterator[str]:
    """The app on ``url`` served by uvicorn in a thread; yields its base URL once it is up."""
    port = free_port()
    config = uvicorn.Config(
        create_app(create_engine(url, pool_size=5, max_overflow=5), settings=settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("the test server stopped while starting")
            threading.Event().wait(0.05)
        else:
            raise RuntimeError("the test server did not start in 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@dataclass
class Offline:
    """A browser context that reaches only this machine; `refused` lists what it tried else."""

    context: BrowserContext
    refused: list[str] = field(default_factory=list)


def offline(browser: Browser, **options: object) -> Offline:
    context = browser.new_context(**options)  # type: ignore[arg-type]
    cut = Offline(context)

    def route(route: Route) -> None:
        if route.request.url.startswith(LOCAL_HOSTS):
            route.continue_()
        else:
            cut.refused.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", route)
    return cut


def sign_in(page: Page, served: Served, secret: str, view: str = "") -> None:
    page.goto(f"{served.base}/console{view}")
    page.get_by_label("Token").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def api(served: Served, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = httpx.post(
        f"{served.base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token(served.tenant, Role.analyst)}"},
        timeout=120,
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]
