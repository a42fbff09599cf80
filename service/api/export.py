"""`GET /export`: a segment's members as CSV, streamed, for machines and the console's
**Export CSV** button: the whole tier (or `where`), not a page.

Authenticated as GraphQL is (``Authorization: Bearer``, the same rate limit), for any role
that may read customers (viewer and up). Query parameters: ``scheme``, ``tier``, ``where`` (a
rule-language condition) and ``metric`` (a metric as written in rules, repeatable: one column
each). Everything is checked before the first line; a refusal is JSON in GraphQL's error
shape (``errors[0].extensions.code``) with an HTTP status: 400 BAD_INPUT or BAD_RULE, 401,
403 FORBIDDEN, 404 NOT_FOUND, 429.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from dsl.errors import RuleError
from service.access.auth import Permission
from service.api.access import Gate, require
from service.api.errors import BAD_INPUT, BAD_RULE, FORBIDDEN, NOT_FOUND, ApiError, api_error
from service.engine.members import prepare_export
from service.errors import UserError

_STATUS = {BAD_INPUT: 400, BAD_RULE: 400, NOT_FOUND: 404, FORBIDDEN: 403}


def _refused(error: ApiError) -> JSONResponse:
    code = error.extensions.get("code", BAD_INPUT)
    body: dict[str, Any] = {
        "data": None,
        "errors": [{"message": error.message, "extensions": error.extensions}],
    }
    return JSONResponse(body, status_code=_STATUS.get(code, 400))


def file_name(scheme: str | None, tier: str | None) -> str:
    """The download's name: `value-VIP.csv`, `customers.csv` for a bare `where`."""
    stem = "-".join(part for part in (scheme, tier) if part) or "customers"
    return re.sub(r"[^\w.-]+", "_", stem) + ".csv"


def export_endpoint(gate: Gate, engine: AsyncEngine) -> Callable[[Request], Awaitable[Response]]:
    async def export(request: Request) -> Response:
        admitted = await gate.http(request)
        if isinstance(admitted, Response):
            return admitted
        params = request.query_params
        try:
            require(admitted, Permission.read_customers)
            prepared = await prepare_export(
                engine,
                admitted.tenant,
                scheme=params.get("scheme") or None,
                tier=params.get("tier") or None,
                where=params.get("where") or None,
                metrics=[m for m in params.getlist("metric") if m.strip()],
            )
        except ApiError as error:
            return _refused(error)
        except (UserError, RuleError) as error:
            return _refused(api_error(error))
        name = file_name(prepared.scheme, prepared.tier)
        return StreamingResponse(
            prepared.lines(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    return export
