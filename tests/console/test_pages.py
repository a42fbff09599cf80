"""The console's and GraphiQL's pages as the service serves them (no browser needed)."""

from __future__ import annotations

import json
import re

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.config import Settings
from service.engine.templates import TEMPLATES


async def get(engine: AsyncEngine, path: str, **headers: str) -> httpx.Response:
    app = create_app(engine, settings=Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        return await client.get(path, headers=headers)


async def test_the_console_page_loads_only_this_services_assets(engine: AsyncEngine) -> None:
    page = await get(engine, "/console")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources == ["/console/static/console.css", "/console/static/console.js"]
    for source in sources:
        asset = await get(engine, source, **{"Accept-Encoding": "gzip"})
        assert asset.status_code == 200 and asset.headers["content-encoding"] == "gzip"
    # The built-in templates travel in the page, as their rule files have them.
    (data,) = re.findall(r'id="tierwise-templates">(.*?)</script>', page.text)
    assert {t["key"]: t["source"] for t in json.loads(data)} == {
        key: template.source for key, template in TEMPLATES.items()
    }


async def test_graphiql_is_served_from_the_service_not_a_cdn(engine: AsyncEngine) -> None:
    page = await get(engine, "/graphql", Accept="text/html")
    assert page.status_code == 200
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) == [
        "/console/static/graphiql.css",
        "/console/static/graphiql.js",
    ]
    assert "unpkg" not in page.text and "https://" not in page.text
    assert (await get(engine, "/console/static/graphiql.js")).status_code == 200
