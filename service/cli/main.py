"""The `tierwise` command: the command groups, one module each, assembled into one app.

Every command finds its database the way the service does (TIERWISE_DATABASE_URL, or the
embedded Postgres in TIERWISE_DATA_DIR). Errors print one clear message and exit 1.
"""

from __future__ import annotations

import sys

import typer

from service.cli import data, reports, serve
from service.cli.keys import keys_app
from service.cli.predict import predict_app
from service.cli.rules import rules_app
from service.cli.strategies import strategies_app
from service.cli.support import print_error
from service.errors import UserError

app = typer.Typer(
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


def main() -> None:
    """Entry point: run the CLI; user errors print one message, never a traceback."""
    try:
        app()
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
