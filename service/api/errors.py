"""The errors clients see: stable ``extensions.code`` values, everything else masked.

Service errors are mapped to codes by their type, here and nowhere else (`api_error`):
`RuleError` is BAD_RULE with its diagnostics, `NotFound` NOT_FOUND, `TimedOut` TIMEOUT, any
other `UserError` BAD_INPUT; resolvers raise them or let them through, and never catch them
to choose a code. `ApiError` carries the codes only the API has (limits, access,
availability); graphql-core copies its ``extensions`` onto the GraphQL error. Any other
exception is a bug or an outage: the client gets "Unexpected error." and the server log has
the full traceback (`log_errors`, called by the schema before `publish` rewrites the
errors).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Sequence
from typing import Any

import strawberry
from graphql import GraphQLError

from dsl import Diagnostic, RuleError
from service.errors import NotFound, TimedOut, UserError

log = logging.getLogger(__name__)

BAD_RULE = "BAD_RULE"
BAD_INPUT = "BAD_INPUT"
BAD_QUERY = "BAD_QUERY"  # the document does not parse, or does not validate against the schema
NOT_FOUND = "NOT_FOUND"
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
UNAUTHENTICATED = "UNAUTHENTICATED"  # no bearer token, or one that does not verify
FORBIDDEN = "FORBIDDEN"  # the caller's role may not do this
RATE_LIMITED = "RATE_LIMITED"  # the caller's token is over its rate limit: retry later
UNAVAILABLE = "UNAVAILABLE"  # try again: e.g. a subscription lost its database connection
TIMEOUT = "TIMEOUT"  # a time bound stopped the work (statement timeout, wait for a connection)
INTERNAL = "INTERNAL"

MASKED_MESSAGE = "Unexpected error."


class ApiError(Exception):
    """An error meant for the client, with its machine-readable code."""

    def __init__(self, code: str, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": code, **extensions}


@strawberry.enum(description="How serious a problem found in rule text is.")
class Severity(enum.Enum):
    ERROR = strawberry.enum_value("error", description="The rules cannot be used as they are.")
    WARNING = strawberry.enum_value(
        "warning", description="The rules work, but probably not as meant."
    )
    NOTE = strawberry.enum_value("note", description="Something that could not be checked.")


def diagnostic_dict(diagnostic: Diagnostic) -> dict[str, Any]:
    """A diagnostic as the `Diagnostic` type spells it, for BAD_RULE's ``diagnostics``."""
    return {
        "line": diagnostic.line,
        "column": diagnostic.column,
        "endLine": diagnostic.end_line,
        "endColumn": diagnostic.end_column,
        "severity": Severity(diagnostic.severity).name,
        "code": diagnostic.code.value,
        "message": diagnostic.message,
        "hint": diagnostic.hint,
    }


def api_error(error: UserError | RuleError) -> ApiError:
    """The client's view of a service error, chosen by its type."""
    if isinstance(error, RuleError):
        first = error.first
        return ApiError(
            BAD_RULE,
            f"{first.line}:{first.column}: {first.message}",
            diagnostics=[diagnostic_dict(d) for d in error.diagnostics],
        )
    if isinstance(error, TimedOut):
        return ApiError(TIMEOUT, str(error))
    return ApiError(NOT_FOUND if isinstance(error, NotFound) else BAD_INPUT, str(error))


# What strawberry's limiting rules and graphql-core's token limit say: their errors carry no
# code, so it is added by message (tests/api/test_limits.py pins each one).
_LIMIT_MESSAGES: Sequence[re.Pattern[str]] = (
    re.compile(r"exceeds maximum operation depth of \d+"),
    re.compile(r"Document contains more than \d+ tokens"),
    re.compile(r"^\d+ aliases found\. Allowed: \d+"),
)


def _is_limit(error: GraphQLError) -> bool:
    return error.original_error is None and any(p.search(error.message) for p in _LIMIT_MESSAGES)


def _is_expected(error: GraphQLError) -> bool:
    """Errors a client may see: ours, the service's errors for users, and GraphQL's own
    (syntax, validation, variables), which have no underlying exception."""
    original = error.original_error
    return original is None or isinstance(original, ApiError | GraphQLError | UserError | RuleError)


def _replaced(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    """``error`` at the same place with another message and extensions."""
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


def public_error(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if not _is_expected(error):
        return _replaced(error, MASKED_MESSAGE, {"code": INTERNAL})
    if isinstance(original, UserError | RuleError):
        mapped = api_error(original)
        return _replaced(error, mapped.message, mapped.extensions)
    if _is_limit(error):
        return _replaced(error, error.message, {**(error.extensions or {}), "code": LIMIT_EXCEEDED})
    if (original is None or isinstance(original, GraphQLError)) and "code" not in (
        error.extensions or {}
    ):
        # graphql-core's own: syntax, validation, variables that do not fit their types.
        return _replaced(error, error.message, {**(error.extensions or {}), "code": BAD_QUERY})
    return error


def log_errors(errors: Sequence[GraphQLError]) -> None:
    """Unexpected errors in full (with traceback); the client's own mistakes only for debugging."""
    for error in errors:
        if isinstance(error.original_error, TimedOut):
            log.warning("request cut off at %s: %s", error.path, error.message)
        elif _is_expected(error):
            log.debug("client error: %s", error.message)
        else:
            log.error("unexpected error in %s", error.path, exc_info=error.original_error)


def publish(result: object) -> None:
    """Codes on service errors and limit errors, unexpected errors masked (after the schema
    has logged them), in a query's or mutation's result or one result of a subscription
    (`service.api.policy.RequestPolicy` calls it on each)."""
    errors = getattr(result, "errors", None)
    if errors:
        result.errors = [public_error(error) for error in errors]  # type: ignore[attr-defined]
