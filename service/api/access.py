"""Who may call the API and what each field lets them do.

Every request is authenticated before GraphQL sees it: plain HTTP requests by their
``Authorization: Bearer`` header (refused with HTTP 401 and ``UNAUTHENTICATED``, or 429 and
``RATE_LIMITED``), WebSocket connections by the ``authorization`` entry of their
``connection_init`` payload or, failing that, the handshake's Authorization header (refused:
the socket is closed with 4403). The token alone decides the tenant.

Every root field declares the permission it needs (`needs`, read from
`service.access.auth.ROLE_PERMISSIONS`); a caller whose role lacks it gets ``FORBIDDEN``.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Callable
from typing import Any

import strawberry
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from strawberry.extensions import FieldExtension
from strawberry.types import Info as StrawberryInfo

from service.access import auth
from service.access.auth import (
    PERMISSION_DESCRIPTIONS,
    ROLE_DESCRIPTIONS,
    Authenticator,
    AuthError,
    Permission,
    Principal,
    principal,
)
from service.access.ratelimit import RateLimited, RateLimiter
from service.api.errors import (
    BAD_INPUT,
    FORBIDDEN,
    RATE_LIMITED,
    UNAUTHENTICATED,
    ApiError,
)
from service.config import Settings
from service.data.records import FieldError, check_tenant_id
from service.logs import REQUEST_ID

log = logging.getLogger(__name__)

# Only with TIERWISE_AUTH_REQUIRED=false (development): the tenant to act in.
TENANT_HEADER = "x-tierwise-tenant"


def _role(role: auth.Role) -> Any:
    return strawberry.enum_value(role, description=ROLE_DESCRIPTIONS[role])


@strawberry.enum(description="What a caller may do: the role its token or key carries.")
class Role(enum.Enum):
    """The API's spelling of `service.access.auth.Role`: each value is the service's role."""

    VIEWER = _role(auth.Role.viewer)
    ANALYST = _role(auth.Role.analyst)
    INGEST = _role(auth.Role.ingest)
    ADMIN = _role(auth.Role.admin)


class Needs(FieldExtension):
    """The caller's role must grant ``permission``; FORBIDDEN (or UNAUTHENTICATED) before the
    resolver runs if not. (Not strawberry's PermissionExtension: its ``source`` parameter
    collides with the fields' argument of that name.)"""

    def __init__(self, permission: Permission) -> None:
        super().__init__()
        self.permission = permission

    # Positional names differ from FieldExtension's (`source` is also a field argument).
    def resolve(  # type: ignore[override]
        self, next_: Callable[..., Any], _root: Any, _info: StrawberryInfo[Any, Any], **kwargs: Any
    ) -> Any:
        require(_info.context.caller, self.permission)
        return next_(_root, _info, **kwargs)

    async def resolve_async(  # type: ignore[override]
        self, next_: Callable[..., Any], _root: Any, _info: StrawberryInfo[Any, Any], **kwargs: Any
    ) -> Any:
        require(_info.context.caller, self.permission)
        result = next_(_root, _info, **kwargs)
        # A subscription's resolver gives its async generator as it is.
        return await result if inspect.isawaitable(result) else result


def needs(permission: Permission) -> list[FieldExtension]:
    """A root field's extensions: the permission check."""
    return [Needs(permission)]


def forbidden(role: auth.Role, permission: Permission) -> ApiError:
    return ApiError(
        FORBIDDEN,
        f"role {role.value!r} may not do this: it needs {permission.value} "
        f"({PERMISSION_DESCRIPTIONS[permission]})",
        permission=permission.value,
    )


def unauthenticated(message: str) -> ApiError:
    return ApiError(UNAUTHENTICATED, message)


def require(caller: Principal | None, permission: Permission) -> Principal:
    if caller is None:
        raise unauthenticated("authentication required")
    if not caller.may(permission):
        raise forbidden(caller.role, permission)
    return caller


def _source(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def _error_body(code: str, message: str) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}


class Gate:
    """Authentication and rate limits for the API's requests and connections."""

    def __init__(self, settings: Settings, authenticator: Authenticator) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        if settings.auth_required and not authenticator.jwts.configured:
            log.info(
                "no TIERWISE_JWT_SECRET or TIERWISE_JWT_PUBLIC_KEYS: only API keys are accepted"
            )
        if not settings.auth_required:
            log.warning(
                "TIERWISE_AUTH_REQUIRED is false: every request acts as admin of %r (or of "
                "the X-Tierwise-Tenant header); never run like this where others can connect",
                settings.default_tenant,
            )

    async def admit(self, connection: HTTPConnection, authorization: str | None) -> Principal:
        """The caller of ``connection``, counted against its rate limit; `AuthError`,
        `ApiError` (a bad development tenant header) or `RateLimited` if refused."""
        # The request id of the logs (the gateway's when it is a sane one), for audit entries.
        source, request_id = _source(connection), REQUEST_ID.get()
        if not self.settings.auth_required:
            caller = self._anonymous(connection, source)
        else:
            caller = await self.authenticator.authenticate(
                authorization, source=source, request_id=request_id
            )
        self.limiter.take(caller.identity)
        return caller

    def _anonymous(self, connection: HTTPConnection, source: str) -> Principal:
        tenant = connection.headers.get(TENANT_HEADER, self.settings.default_tenant)
        try:
            check_tenant_id(tenant)
        except FieldError as error:
            raise ApiError(BAD_INPUT, str(error)) from None
        return principal(tenant, auth.Role.admin, "anonymous", f"anonymous:{source}", source)

    async def http(self, connection: HTTPConnection) -> Principal | JSONResponse:
        """The caller of a plain HTTP request, or the response refusing it."""
        try:
            return await self.admit(connection, connection.headers.get("authorization"))
        except AuthError as error:
            return JSONResponse(
                _error_body(UNAUTHENTICATED, error.message),
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="tierwise"'},
            )
        except RateLimited as limited:
            return JSONResponse(
                _error_body(RATE_LIMITED, str(limited)),
                status_code=429,
                headers={"Retry-After": str(limited.retry_after_seconds)},
            )
        except ApiError as error:
            return JSONResponse(_error_body(error.extensions["code"], error.message), 400)

    async def websocket(
        self, connection: HTTPConnection, params: dict[str, Any] | None
    ) -> Principal:
        """The caller of a WebSocket connection, from its connection_init payload (or the
        handshake's header); raises `ApiError` (UNAUTHENTICATED, RATE_LIMITED) if refused."""
        try:
            return await self.admit(connection, _ws_authorization(connection, params))
        except AuthError as error:
            raise unauthenticated(error.message) from None
        except RateLimited as limited:
            raise ApiError(RATE_LIMITED, str(limited)) from None

    async def still_valid(
        self, connection: HTTPConnection, params: dict[str, Any] | None
    ) -> str | None:
        """Why a WebSocket's credential no longer holds (expired, revoked), or None if it
        does: verified again as at connection, the key from the cache while it is fresh, not
        counted against the caller's rate limit."""
        if not self.settings.auth_required:
            return None
        try:
            await self.authenticator.authenticate(
                _ws_authorization(connection, params), source=_source(connection)
            )
        except (AuthError, RateLimited) as error:
            return getattr(error, "message", None) or str(error)
        return None


def _ws_authorization(connection: HTTPConnection, params: dict[str, Any] | None) -> str | None:
    """A WebSocket's token: the connection_init payload's, else the handshake's header."""
    for name, value in (params or {}).items():
        if name.lower() == "authorization" and isinstance(value, str):
            return value
    return connection.headers.get("authorization")
