"""Text the database can hold: a string argument with a NUL character (Postgres text has
none) or a lone surrogate (not encodable as UTF-8) is the client's error, BAD_INPUT, found
before anything runs; it used to fail in the driver, as INTERNAL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import DocumentNode, GraphQLError, StringValueNode, Visitor, visit

from service.api.errors import BAD_INPUT, ApiError
from service.data.records import NEITHER, UNSTORABLE, unstorable_in


class _Literals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: StringValueNode | None = None

    def enter_string_value(self, node: StringValueNode, *_: object) -> None:
        if self.found is None and UNSTORABLE.search(node.value):
            self.found = node


def require_storable(value: str, where: str) -> None:
    """Raises `ApiError` (BAD_INPUT) naming ``where`` when ``value`` holds unstorable text: for
    subscriptions' arguments, which `service.api.policy` does not see (strawberry runs no
    execution hooks for subscriptions)."""
    if UNSTORABLE.search(value):
        raise ApiError(BAD_INPUT, f"{where}: {NEITHER}")


def unstorable(
    document: DocumentNode, variables: Mapping[str, Any] | None, query: str | None = None
) -> str | None:
    """Where the operation's input holds text the database cannot store, or None. With the
    document's ``query`` text, its literals are looked at once per distinct text."""
    for name, value in (variables or {}).items():
        found = unstorable_in(value, f"variable ${name}")
        if found is not None:
            return found
    if query is not None:
        return _in_literals_of(query, document)
    return _in_literals(document)


# Per document text (a string hashes once; a document node hashes its whole tree): where its
# literals hold unstorable text. Emptied when full (frontends send a few distinct documents).
_LITERALS: dict[str, str | None] = {}
_MAX_LITERALS = 256


def _in_literals_of(query: str, document: DocumentNode) -> str | None:
    """`_in_literals` of ``document``, the parse of ``query``."""
    try:
        return _LITERALS[query]
    except KeyError:
        pass
    found = _in_literals(document)
    if len(_LITERALS) >= _MAX_LITERALS:
        _LITERALS.clear()
    _LITERALS[query] = found
    return found


def _in_literals(document: DocumentNode) -> str | None:
    literals = _Literals()
    visit(document, literals)
    if literals.found is not None and literals.found.loc is not None:
        line = literals.found.loc.source.get_location(literals.found.loc.start)
        return f"the string at line {line.line}, column {line.column}"
    return None


def text_refusal(
    document: DocumentNode | None, variables: Mapping[str, Any] | None, query: str | None = None
) -> GraphQLError | None:
    """The BAD_INPUT error of a query or mutation whose input holds a NUL character or a lone
    surrogate, or None."""
    where = None if document is None else unstorable(document, variables, query)
    if where is None:
        return None
    return GraphQLError(
        f"{where}: {NEITHER}",
        extensions={"code": BAD_INPUT},
    )
