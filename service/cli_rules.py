"""`tierwise rules check` and `tierwise rules fmt`: the rule language on the command line."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer

from dsl.checker import check_files
from dsl.errors import Diagnostic, RuleError, render
from dsl.formatter import format_text

rules_app = typer.Typer(help="Check and format tier rule files.", no_args_is_help=True)

Files = Annotated[list[Path], typer.Argument(help="Rule files.", show_default=False)]


class OutputFormat(enum.StrEnum):
    text = "text"
    json = "json"


def _read(files: list[Path]) -> tuple[dict[str, str], list[Diagnostic]]:
    sources: dict[str, str] = {}
    problems: list[Diagnostic] = []
    for path in files:
        try:
            sources[str(path)] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
            problems.append(Diagnostic(str(path), 1, 1, 1, 1, "error", f"cannot read: {reason}"))
    return sources, problems


def _report(diagnostics: list[Diagnostic], sources: dict[str, str], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        typer.echo(json.dumps([d.to_json() for d in diagnostics], ensure_ascii=False, indent=2))
        return
    for diagnostic in diagnostics:
        typer.echo(render(diagnostic, sources.get(diagnostic.file)))
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    typer.echo(f"{len(sources)} file(s) checked: {errors} error(s), {warnings} warning(s)")


@rules_app.command("check")
def check(
    files: Files,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="text, or json for tools.")
    ] = OutputFormat.text,
) -> None:
    """Report errors and warnings as FILE:LINE:COL; exit 1 on any error."""
    sources, diagnostics = _read(files)
    try:
        diagnostics.extend(check_files(sources).warnings)
    except RuleError as error:
        diagnostics.extend(error.diagnostics)
    _report(diagnostics, sources, output)
    if any(d.severity == "error" for d in diagnostics):
        raise typer.Exit(1)


@rules_app.command("fmt")
def fmt(
    files: Files,
    check_only: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 if a file would change.")
    ] = False,
) -> None:
    """Rewrite files in the canonical layout."""
    sources, problems = _read(files)
    failed = bool(problems)
    for problem in problems:
        typer.echo(render(problem, None))
    for file, text in sources.items():
        try:
            formatted = format_text(text, file)
        except RuleError as error:
            for diagnostic in error.diagnostics:
                typer.echo(render(diagnostic, text))
            failed = True
            continue
        if formatted == text:
            continue
        if check_only:
            typer.echo(f"{file}: would be reformatted")
            failed = True
        else:
            Path(file).write_text(formatted, encoding="utf-8")
            typer.echo(f"{file}: reformatted")
    if failed:
        raise typer.Exit(1)
