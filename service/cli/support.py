"""What every `tierwise` command shares: settings and logging, consoles, and running async
work against the configured (or embedded) database.

Start-up: the command modules import at their top only what every command needs to parse its
arguments (typer, rich's console, this module); the database (SQLAlchemy's asyncio engine,
asyncpg, alembic), settings (pydantic), the engine and the API are imported by the commands
that use them, so `tierwise --help`, `rules check` and `rules templates` start without them
(tests/cli/test_startup.py holds this).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from service.errors import UserError

if TYPE_CHECKING:
    import pydantic
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.config import LogFormat, Settings

T = TypeVar("T")

# Below this many rows an import is over before a progress bar would be worth drawing.
PROGRESS_MIN_ROWS = 5_000

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"


TenantOption = Annotated[
    str | None,
    typer.Option(
        "--tenant", help="Tenant to work in (default: TIERWISE_DEFAULT_TENANT, else default)."
    ),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="text, or json for tools.")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="DATE",
        help="Evaluate as if it were DATE (ISO 8601; a date alone is midnight UTC), using "
        "only data before it.",
    ),
]


def settings_problems(error: pydantic.ValidationError) -> str:
    """One line per invalid setting, named as the environment sets it; a secret's value is
    never echoed."""
    from typing import get_args

    from pydantic import SecretStr

    from service.config import Settings

    lines = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "settings"
        field = Settings.model_fields.get(name)
        secret = field is not None and SecretStr in (field.annotation, *get_args(field.annotation))
        given = "" if secret else f" (got {problem['input']!r})"
        lines.append(f"TIERWISE_{name.upper()}: {problem['msg']}{given}")
    return "invalid settings:\n" + "\n".join(lines)


def settings(log_format: LogFormat = "text", **overrides: object) -> Settings:
    """The settings, with logging configured (``log_format`` unless TIERWISE_LOG_FORMAT)."""
    from pydantic import ValidationError

    from service import logs
    from service.config import load_settings

    try:
        loaded = load_settings(**overrides)
    except ValidationError as error:
        raise UserError(settings_problems(error)) from None
    logs.configure(loaded.log_level, loaded.log_format or log_format)
    return loaded


def run_with_engine(
    config: Settings,
    work: Callable[[AsyncEngine], Awaitable[T]],
    *,
    create: bool = False,
    needs: Literal["schema", "connection", "nothing"] = "schema",
    then: Callable[[URL], None] | None = None,
) -> T:
    """Run ``work`` against the configured (or embedded) database, then release everything.

    Only with ``create`` (`demo`, `migrate`) may a new embedded Postgres be made: every other
    command needs an existing database. Before any work, ``needs`` ``schema`` checks that the
    database answers and is migrated to this code's revision, ``connection`` only that it
    answers; ``nothing`` (`serve`: /readyz reports both while it waits) checks neither.
    Otherwise UserError says where Tierwise looked and what to do. ``then``, if given, runs
    after the work's event loop has ended, with the database's URL, before an embedded
    Postgres stops (`demo` serving with several workers).
    """
    import asyncio  # here: commands without a database start without it (about 30 ms)

    from service.db.database import DatabaseLimits, create_engine, database_url

    async def run(engine: AsyncEngine) -> T:
        try:
            if needs != "nothing":
                await _check_database(engine, config, needs_schema=needs == "schema")
            return await work(engine)
        finally:
            await engine.dispose()

    with database_url(config, create=create) as url:
        engine = create_engine(
            url, pre_ping=config.database_pre_ping, limits=DatabaseLimits.of(config)
        )
        result = asyncio.run(run(engine))
        if then is not None:
            then(url)
        return result


async def _check_database(engine: AsyncEngine, config: Settings, *, needs_schema: bool) -> None:
    from sqlalchemy.exc import DBAPIError

    from service.db import migrate
    from service.db.database import how_to_point, location

    try:
        revision = await migrate.current_revision(engine)
    except (OSError, DBAPIError) as error:
        reason = getattr(error, "orig", None) or error
        raise UserError(f"database: cannot connect to {location(config)}: {reason}") from None
    head = migrate.head_revision()
    if not needs_schema or revision == head:
        return
    if revision is None:
        raise UserError(
            f"{location(config)} holds no Tierwise tables: `tierwise migrate` sets them up "
            f"there; to use another database, {how_to_point(config)}"
        )
    raise UserError(
        f"{location(config)} has schema revision {revision}, this Tierwise needs {head}: "
        "run `tierwise migrate` (or use the Tierwise version that migrated it)"
    )


def parse_as_of(value: str | None) -> dt.datetime | None:
    """The time of ``--as-of``; UserError for one that does not parse or is in the future."""
    if value is None:
        return None
    from service.data.records import FieldError, parse_timestamp
    from service.engine.evaluation import check_past

    try:
        when = parse_timestamp(value)
        check_past(when, dt.datetime.now(dt.UTC))
    except (FieldError, UserError) as error:
        raise UserError(f"--as-of: {error}") from None
    return when


def backtest_note(when: dt.datetime) -> str:
    """The line that tells a backtest's output from a live run's."""
    return f"backtest as of {when:%Y-%m-%d %H:%M} UTC, nothing changed"


def print_exact_json(value: object) -> None:
    """JSON for tools, decimals written exactly as JSON numbers (service.db.exact; rich's
    print_json would read them back through float)."""
    from service.db import exact

    out.print(exact.dumps(value, plain_numbers=True), highlight=False, markup=False)


def print_error(message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message), highlight=False)


@contextmanager
def progress(file: Path, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal for big files; nothing otherwise."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from service.data.readers import count_data_rows

    total = count_data_rows(file)
    if total < PROGRESS_MIN_ROWS:
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda rows: progress.advance(task, rows)
