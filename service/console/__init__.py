"""The analyst console (``/console``) and the GraphiQL page, served by the service itself.

Both pages are plain HTML around JavaScript and CSS built from ``src/`` into ``static/`` by
``build.mjs`` (esbuild; see docs/console.md). The built files are committed and shipped as
package data, so running Tierwise needs no Node.js and no network: nothing is loaded from a
CDN. CI rebuilds them and fails when they differ from the committed ones.

The pages hold no data: everything they show comes from the GraphQL API, with the token the
analyst signs in with (kept in the browser's ``sessionStorage``, so it ends with the tab).
"""

from __future__ import annotations

import json

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.engine.templates import TEMPLATES

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "STATIC_PATH",
    "console_html",
    "graphiql_html",
    "html_response",
    "routes",
]

STATIC_PATH = "/console/static"

# Everything comes from this origin; styles may be inline (CodeMirror and the charts set them).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store"}


def _page(title: str, name: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n"
        f'<link rel="stylesheet" href="{STATIC_PATH}/{name}.css">\n'
        f'<script defer src="{STATIC_PATH}/{name}.js"></script>\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _json_script(element_id: str, value: object) -> str:
    """``value`` as a JSON data block; ``<`` escaped so no text can close the element."""
    text = json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def console_html() -> str:
    """The console page: the built-in templates travel inside it (they are the package's, the
    same for every tenant), everything else is asked of the API."""
    templates = [{"key": t.key, "title": t.title, "source": t.source} for t in TEMPLATES.values()]
    body = (
        '<div id="console"><noscript>The Tierwise console needs JavaScript.</noscript></div>\n'
        + _json_script("tierwise-templates", templates)
    )
    return _page("Tierwise console", "console", body)


def graphiql_html() -> str:
    """The GraphiQL IDE's page, with React and GraphiQL from this service (not a CDN)."""
    return _page("Tierwise GraphiQL", "graphiql", '<div id="graphiql">Loading GraphiQL…</div>')


def html_response(html: str) -> HTMLResponse:
    """A page of this package, with its content security policy."""
    return HTMLResponse(html, headers=_HEADERS)


async def _console(request: Request) -> HTMLResponse:
    return html_response(console_html())


def routes() -> list[BaseRoute]:
    """``/console`` and its assets (gzip-compressed for clients that accept it)."""
    assets = StaticFiles(packages=[("service.console", "static")])
    return [
        Route("/console", _console),
        Mount(STATIC_PATH, app=GZipMiddleware(assets, minimum_size=1024), name="console-static"),
    ]
