"""Logging: one handler on the root logger, JSON lines (for `serve`) or plain text (for the
command line), and the current request's id on every record.

The request id lives in a context variable that the HTTP layer sets for the duration of a
request (service.api.observe); `RequestIdFilter` copies it onto each record, so everything
logged while handling that request (resolvers, the masked-error path, uvicorn's access line)
carries it, without passing it around.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
import traceback
from typing import Any, TextIO

from sqlalchemy.exc import DBAPIError

from service.config import LogFormat

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tierwise_request_id", default=None
)

# The attributes every LogRecord has; anything else on a record came from `extra=` and is
# written as a field of its own.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "color_message", "taskName"}
)


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (or None) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


# What a database error may say in a log: names Postgres gives, never values.
_DATABASE_NAMES = ("constraint_name", "table_name", "column_name", "data_type_name")


def _is_database_error(error: BaseException) -> bool:
    module = type(error).__module__
    return (
        isinstance(error, DBAPIError)
        or module.split(".")[0] == "asyncpg"
        or module.startswith("sqlalchemy.dialects.")
    )


def _database_summary(error: BaseException) -> str:
    """A database error by its SQLSTATE, the names involved and the statement: its message is
    left out, as Postgres and asyncpg quote values in theirs (``invalid input for query
    argument $1: 'whsec_...'``, ``Key (url)=(...) already exists``)."""
    found: dict[str, str] = {}
    layers: list[BaseException] = []
    layer: BaseException | None = error
    while layer is not None and layer not in layers:
        layers.append(layer)
        for name in ("sqlstate", *_DATABASE_NAMES):
            value = getattr(layer, name, None)
            if isinstance(value, str) and value and name not in found:
                found[name] = value
        layer = getattr(layer, "orig", None) or layer.__cause__
    parts = [f"{name.removesuffix('_name')} {value}" for name, value in found.items()]
    summary = f"message withheld ({', '.join(parts) or 'no SQLSTATE'})"
    if isinstance(error, DBAPIError) and error.statement:
        summary += f"\n[SQL: {error.statement}]"
    return summary


def _chain(error: BaseException) -> list[tuple[BaseException, str | None]]:
    """``error`` and what it came from, as Python's traceback shows them: each with how it
    leads to the one before it ("cause", "context"; None for ``error`` itself)."""
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "context"
        else:
            current = None
    return chain


_LINKS = {
    "cause": "\nThe above exception was the direct cause of the following exception:\n\n",
    "context": "\nDuring handling of the above exception, another exception occurred:\n\n",
}


def _safe_traceback(chain: list[tuple[BaseException, str | None]]) -> str:
    """The traceback of a `_chain` as Python prints it, with every database error's message
    replaced by `_database_summary`."""
    text: list[str] = []
    for exception, link in reversed(chain):
        message = _database_summary(exception) if _is_database_error(exception) else str(exception)
        kind, module = type(exception).__qualname__, type(exception).__module__
        name = kind if module in ("builtins", "__main__") else f"{module}.{kind}"
        text.append("Traceback (most recent call last):\n")
        text.extend(traceback.format_tb(exception.__traceback__))
        text.append(f"{name}: {message}\n" if message else f"{name}\n")
        if link is not None:
            text.append(_LINKS[link])
    return "".join(text).rstrip("\n")


def _safe_argument(argument: object) -> object:
    if isinstance(argument, BaseException) and _is_database_error(argument):
        return _database_summary(argument)
    return argument


class UvicornServerName(logging.Filter):
    """uvicorn logs its start-up and shut-down ("Uvicorn running on ...") on a logger named
    ``uvicorn.error``, for historical reasons: they are shown as ``uvicorn.server``, so that
    nobody hunts for an error in a normal start."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "uvicorn.server"
        return True


class RedactDatabaseErrors(logging.Filter):
    """Statement parameters never reach a log line: a record's traceback or argument that is
    (or was caused by) a database error is written without that error's message, which can
    quote a parameter (a customer's data, a webhook's secret)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            chain = _chain(error)
            if any(_is_database_error(exception) for exception, _ in chain):
                record.exc_text = _safe_traceback(chain)
                record.exc_info = None
        if isinstance(record.args, tuple):
            record.args = tuple(_safe_argument(argument) for argument in record.args)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    the `extra=` fields, and the traceback as ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain layout for people at a terminal, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


# Loggers whose own handlers would bypass ours: their records go to the root handler instead.
_ROUTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# Their progress chatter (pg_ctl output, each migration step) is debugging detail.
_CHATTY = ("pgserver", "alembic")


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``stream``, or to whatever `sys.stderr` is at the time of each record."""

    def __init__(self, stream: TextIO | None) -> None:
        self._fixed = stream
        super().__init__(stream)

    @property
    def stream(self) -> TextIO:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._fixed = value if value is not sys.stderr else None


def configure(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Send every log record, uvicorn's included, through one handler in ``log_format``
    (configuring again replaces it; other handlers, such as a test runner's, stay)."""
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactDatabaseErrors())
    handler.addFilter(UvicornServerName())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _ROUTED:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
    chatty_level = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in _CHATTY:
        logging.getLogger(name).setLevel(chatty_level)
