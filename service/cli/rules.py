"""`tierwise rules check|fmt|publish|preview|templates`: the rule language on the command line.

`check`, `preview` and `publish` agree on every file: all three check `in tier` references
against the tenant's published schemes, `check` only when a database is there to read them
from (it never creates one); without, it notes the references it could not check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.support import (
    AsOfOption,
    FormatOption,
    OutputFormat,
    TenantOption,
    backtest_note,
    out,
    parse_as_of,
    print_exact_json,
    run_with_engine,
    settings,
)
from service.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from dsl.errors import Diagnostic, RuleError
    from service.config import Settings
    from service.engine import evaluation, schemes
    from service.engine.schemes import References

# The rule language, the database and the engine are imported by the commands that use them
# (the database only by `publish`, `preview`, and `check` when a reference needs the published
# schemes), so that `--help`, `check` and `templates` start quickly.

rules_app = typer.Typer(
    rich_markup_mode=None,
    help="Check, format, preview and publish tier rule files; print the built-in templates.",
    no_args_is_help=True,
)

Files = Annotated[list[Path], typer.Argument(help="Rule files.", show_default=False)]
SchemeOption = Annotated[
    str | None,
    typer.Option("--scheme", metavar="KEY", help="The key of a file that is a bare list of tiers."),
]


def _read(files: list[Path]) -> tuple[dict[str, str], list[Diagnostic]]:
    from dsl.codes import Code
    from dsl.errors import Diagnostic
    from dsl.tree import Span

    sources: dict[str, str] = {}
    problems: list[Diagnostic] = []
    for path in files:
        try:
            sources[str(path)] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
            problems.append(
                Diagnostic.at(
                    str(path), Span(1, 1, 1, 1), f"cannot read: {reason}", code=Code.UNREADABLE_FILE
                )
            )
    return sources, problems


def _report(diagnostics: list[Diagnostic], sources: dict[str, str], fmt: OutputFormat) -> None:
    from dsl.errors import render

    if fmt is OutputFormat.json:
        typer.echo(json.dumps([d.to_json() for d in diagnostics], ensure_ascii=False, indent=2))
        return
    for diagnostic in diagnostics:
        typer.echo(render(diagnostic, sources.get(diagnostic.file)))
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = sum(d.severity == "warning" for d in diagnostics)
    notes = len(diagnostics) - errors - warnings
    typer.echo(
        f"{len(sources)} file(s) checked: {errors} error(s), {warnings} warning(s)"
        + (f", {notes} note(s)" if notes else "")
    )


def _published(config: Settings, tenant: str) -> References | str:
    """The tenant's published schemes as `in tier` sees them, or why they could not be read.

    The one place `check` looks for a database: where every command does (`run_with_engine`:
    TIERWISE_DATABASE_URL, or an embedded Postgres that already exists in TIERWISE_DATA_DIR,
    none being created just to look); the reason says where it looked."""
    from sqlalchemy.exc import DBAPIError

    from service.db.database import tenant_transaction
    from service.engine import schemes

    async def work(engine: AsyncEngine) -> References:
        async with tenant_transaction(engine, tenant) as connection:
            return await schemes.published_references(connection, tenant)

    try:
        return run_with_engine(config, work)
    except UserError as error:  # no database there, or not migrated: says where it looked
        return str(error)
    except (OSError, DBAPIError) as error:
        return f"the published schemes could not be read: {getattr(error, 'orig', None) or error}"


def _check(
    sources: dict[str, str], scheme: str | None, published: References | str
) -> list[Diagnostic]:
    from dsl.checker import check_files
    from dsl.errors import RuleError

    known = None if isinstance(published, str) else published
    try:
        return list(
            check_files(
                sources,
                known.tiers if known else None,
                known_dependencies=known.dependencies if known else None,
                published_unknown=published if isinstance(published, str) else None,
                bare_key=scheme,
            ).warnings
        )
    except RuleError as error:
        return list(error.diagnostics)


@rules_app.command("check")
def check(
    files: Files,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="text, or json for tools.")
    ] = OutputFormat.text,
    scheme: SchemeOption = None,
    tenant: TenantOption = None,
) -> None:
    """Report errors, warnings and notes as FILE:LINE:COL; exit 1 on any error.

    `in tier` references to schemes not in FILES are checked against the tenant's published
    schemes when there is a database (as publish does); without one, a note says which
    could not be checked."""
    from dsl.codes import Code

    sources, diagnostics = _read(files)
    unknown = "the published schemes were not looked up"
    found = _check(sources, scheme, unknown)
    if any(d.code is Code.UNCHECKED_REFERENCE for d in found):
        # Only now is a database needed: for references outside these files.
        config = settings()
        found = _check(sources, scheme, _published(config, tenant or config.default_tenant))
    diagnostics.extend(found)
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
    from dsl.errors import RuleError, render
    from dsl.formatter import format_text

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


def _read_one(file: Path) -> str:
    sources, problems = _read([file])
    if problems:
        raise UserError(problems[0].message + f": {file}")
    return sources[str(file)]


def _rule_errors(error: RuleError, file: Path, text: str, outcome: str) -> typer.Exit:
    """Print the checker's errors (nothing was changed), then `FILE: outcome: ...`, and say
    how to exit."""
    from dsl.errors import render

    for diagnostic in error.diagnostics:
        typer.echo(render(diagnostic, text if diagnostic.file == str(file) else None), err=True)
    errors = sum(d.severity == "error" for d in error.diagnostics)
    typer.echo(f"{file}: {outcome}: the rules have {errors} error(s)", err=True)
    return typer.Exit(1)


@rules_app.command("publish")
def publish(
    file: Annotated[Path, typer.Argument(help="A rule file.", show_default=False)],
    scheme: SchemeOption = None,
    tenant: TenantOption = None,
) -> None:
    """Check, then publish every scheme of FILE as its new current version and evaluate it.

    Refuses, changing nothing, when the checker finds an error. Publishing unchanged rules
    creates no version.
    """
    from dsl.errors import RuleError, render
    from service.access import audit
    from service.db.database import tenant_transaction
    from service.engine import evaluation, schemes

    config = settings()
    tenant_id = tenant or config.default_tenant
    text = _read_one(file)

    async def work(engine: AsyncEngine) -> tuple[schemes.Published, list[evaluation.RunResult]]:
        async with tenant_transaction(engine, tenant_id) as connection:
            published = await schemes.publish(
                connection,
                tenant_id,
                text,
                file=str(file),
                scheme_key=scheme,
                actor=audit.command_line_actor(),
            )
        runs = await evaluation.evaluate_all(
            engine, tenant_id, keys=published.changed, trigger="publish"
        )
        return published, runs

    try:
        published, runs = run_with_engine(config, work)
    except RuleError as error:
        raise _rule_errors(error, file, text, "not published") from None
    for warning in published.warnings.warnings:
        typer.echo(render(warning, text), err=True)
    for item in published.schemes:
        state = "published" if item.key in published.changed else "unchanged"
        out.print(f"scheme {item.key}: version {item.version} {state}", highlight=False)
    for run in runs:
        tiers = ", ".join(f"{t.tier} {t.customers:,}" for t in run.tiers)
        out.print(
            f"evaluated {run.scheme} v{run.version}: {tiers}; "
            f"{run.changed:,} customers changed tier",
            highlight=False,
        )


@rules_app.command("preview")
def preview(
    file: Annotated[Path, typer.Argument(help="A rule file.", show_default=False)],
    scheme: SchemeOption = None,
    as_of: AsOfOption = None,
    tenant: TenantOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """What publishing FILE would do: customers and revenue per tier, and how many customers
    would move from which current tier to which. Writes nothing."""
    from dsl.errors import RuleError
    from service.engine import evaluation

    config = settings()
    tenant_id = tenant or config.default_tenant
    text = _read_one(file)
    when = parse_as_of(as_of)

    async def work(engine: AsyncEngine) -> list[evaluation.Preview]:
        return await evaluation.preview(
            engine, tenant_id, text, file=str(file), scheme_key=scheme, as_of=when
        )

    try:
        previews = run_with_engine(config, work)
    except RuleError as error:
        raise _rule_errors(error, file, text, "no preview") from None
    if output is OutputFormat.json:
        print_exact_json([_preview_json(p) for p in previews])
        return
    if when is not None:
        out.print(backtest_note(when), highlight=False)
    for item in previews:
        total = sum(t.customers for t in item.tiers) or 1
        out.print(f"scheme {item.scheme} as of {item.as_of:%Y-%m-%d %H:%M} UTC", highlight=False)
        out.print(
            f"  {'tier':<24} {'customers':>10} {'share':>7} {'revenue':>16}",
            highlight=False,
            markup=False,
        )
        for tier in item.tiers:
            out.print(
                f"  {tier.tier:<24} {tier.customers:>10,} {tier.customers / total:>7.1%}"
                f" {tier.revenue:>16,.2f}",
                highlight=False,
                markup=False,
            )
        if item.moves:
            out.print("  would move (from current tier -> to tier: customers):", highlight=False)
            for move in item.moves:
                out.print(
                    f"    {move.from_tier or '(none)'} -> {move.to_tier or '(none)'}:"
                    f" {move.customers:,}",
                    highlight=False,
                    markup=False,
                )


def _preview_json(item: evaluation.Preview) -> dict[str, object]:
    return {
        "scheme": item.scheme,
        "as_of": item.as_of.isoformat(),
        "tiers": [
            {"tier": t.tier, "customers": t.customers, "revenue": t.revenue} for t in item.tiers
        ],
        "moves": [
            {"from": m.from_tier, "to": m.to_tier, "customers": m.customers} for m in item.moves
        ],
    }


@rules_app.command("templates")
def templates(
    key: Annotated[
        str | None, typer.Argument(help="Print this template's rules (to copy and adapt).")
    ] = None,
) -> None:
    """List the built-in scheme templates, or print one's rule file."""
    from service.engine.templates import TEMPLATES

    if key is None:
        for template in TEMPLATES.values():
            tiers = ", ".join(template.check().tier_names)
            out.print(f"{template.key:<10} {template.title}: {tiers}", highlight=False)
        return
    if key not in TEMPLATES:
        raise UserError(f"no template {key!r}; the templates are {', '.join(TEMPLATES)}")
    typer.echo(TEMPLATES[key].source, nl=False)
