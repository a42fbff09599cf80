"""The `tierwise` command: the command groups, one module each, assembled into one app.

Every command finds its database the way the service does (TIERWISE_DATABASE_URL, or the
embedded Postgres in TIERWISE_DATA_DIR). Errors print one clear message and exit 1.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer import core as typer_core

from service.cli.support import print_error
from service.errors import UserError

# The command modules, in the order `tierwise --help` lists their commands: (module, its
# Typer, the group's name, or None for commands at the top level).
_MODULES = (
    ("serve", "app", None),
    ("data", "app", None),
    ("reports", "app", None),
    ("rules", "rules_app", "rules"),
    ("strategies", "strategies_app", "strategies"),
    ("keys", "keys_app", "keys"),
    ("predict", "predict_app", "predict"),
)
# Which module defines each top-level command and group (tests/cli/test_startup.py holds this
# equal to what the modules define). A command then imports and builds only its own module's
# commands: typer builds, and inspects the signature of, every command it is given.
COMMAND_MODULES = {
    **dict.fromkeys(("migrate", "distribute", "serve", "demo"), "serve"),
    **dict.fromkeys(("import", "delete", "currency", "rollups"), "data"),
    **dict.fromkeys(("evaluate", "segments", "export"), "reports"),
    **{group: module for module, _, group in _MODULES if group is not None},
}


def build_app(command: str | None = None) -> typer.Typer:
    """The `tierwise` app: with ``command`` (a name of `COMMAND_MODULES`) only the commands of
    the module that defines it, otherwise all of them (no command, `--help`, an unknown name,
    which click then reports as it does)."""
    app = typer.Typer(
        rich_markup_mode=None,
        help="Tierwise: customer tiers from rules, evaluated in Postgres, served over GraphQL.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    only = COMMAND_MODULES.get(command or "")
    for module, attribute, group in _MODULES:
        if only is None or only == module:
            app.add_typer(
                getattr(importlib.import_module(f"service.cli.{module}"), attribute), name=group
            )
    return app


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
    arguments = sys.argv[1:]
    # The first argument names the command unless it is an option (`tierwise --help rules`
    # lists every command).
    first = arguments[0] if arguments and not arguments[0].startswith("-") else None
    command = typer.main.get_command(build_app(first))
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
