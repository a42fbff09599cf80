"""The `tierwise` command: the command groups, one module each, assembled into one app.

Every command finds its database the way the service does (TIERWISE_DATABASE_URL, or the
embedded Postgres in TIERWISE_DATA_DIR). Errors print one clear message and exit 1.
"""

from __future__ import annotations

import sys

import typer
from typer import core as typer_core

from service.cli import data, reports, serve
from service.cli.keys import keys_app
from service.cli.predict import predict_app
from service.cli.rules import rules_app
from service.cli.strategies import strategies_app
from service.cli.support import print_error
from service.errors import UserError

app = typer.Typer(
    rich_markup_mode=None,
    help="Tierwise: customer tiers from rules, evaluated in Postgres, served over GraphQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(serve.app)
app.add_typer(data.app)
app.add_typer(reports.app)
app.add_typer(rules_app, name="rules")
app.add_typer(strategies_app, name="strategies")
app.add_typer(keys_app, name="keys")
app.add_typer(predict_app, name="predict")


def _name_values(command: object) -> None:
    """Name what each option takes by the option (`--scheme SCHEME`, `--format text|json`), as
    click does: typer labels it with the Python type instead (`<str>`, `<list[str]>`)."""
    for param in getattr(command, "params", ()):
        if isinstance(param, typer_core.TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "value").upper()
        elif isinstance(param, typer_core.TyperOption) and param.metavar is None:
            if param.is_flag or param.count:
                continue
            descriptor = param.type_descriptor
            choices = descriptor.choices if descriptor.is_choice else None
            name = (param.name or "value").upper().replace("_", "-")
            param.metavar = "|".join(map(str, choices)) if choices else name
    for sub in getattr(command, "commands", {}).values():
        _name_values(sub)


def main() -> None:
    """Entry point: run the CLI; user errors print one message, never a traceback."""
    command = typer.main.get_command(app)
    _name_values(command)
    try:
        command(prog_name="tierwise")
    except UserError as error:
        print_error(str(error))
        sys.exit(1)
    except Exception as error:
        if not isinstance(error, (OSError, *_database_errors())):
            raise
        reason = getattr(error, "orig", None) or error
        print_error(f"database: {reason}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _database_errors() -> tuple[type[Exception], ...]:
    """SQLAlchemy's database error, if a command imported SQLAlchemy (only then can one have
    been raised): commands that need no database start without it."""
    exc = sys.modules.get("sqlalchemy.exc")
    return () if exc is None else (exc.DBAPIError,)
