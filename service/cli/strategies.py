"""`tierwise strategies list|save|delete`: what the business does for each tier, from the
command line (the same as the API's `strategies`, `saveStrategy` and `deleteStrategy`).

The command line acts with the database's own rights, as ``cli:<os user>``: every save and
delete is in the tenant's audit log under that name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from service.cli.support import (
    FormatOption,
    OutputFormat,
    TenantOption,
    out,
    print_exact_json,
    run_with_engine,
)
from service.cli.support import settings as load
from service.errors import NotFound, UserError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.db.ids import Ids
    from service.engine import strategies as service

# The database and the engine are imported by the commands, when they run (see support).

strategies_app = typer.Typer(
    rich_markup_mode=None,
    help="Strategies: what the business does for the customers of a tier.",
    no_args_is_help=True,
)

SchemeOption = Annotated[str, typer.Option("--scheme", help="Key of a published scheme.")]
TierOption = Annotated[str, typer.Option("--tier", help="A tier of --scheme.")]
NameOption = Annotated[str, typer.Option("--name", help="The strategy's name, unique per tier.")]


def _dict(strategy: service.Strategy, ids: Ids) -> dict[str, Any]:
    from service.db.ids import RowKind

    return {
        # The id the API shows for it (opaque, service/db/ids.py), not the internal number.
        "id": ids.encode(RowKind.strategy, strategy.id),
        "scheme": strategy.scheme,
        "tier": strategy.tier,
        "name": strategy.name,
        "channel": strategy.channel,
        "priority": strategy.priority,
        "description": strategy.description,
        "parameters": dict(strategy.parameters),
        "active": strategy.active,
    }


@strategies_app.command("list")
def list_(
    scheme: Annotated[str | None, typer.Option("--scheme", help="Only this scheme's.")] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="Only this tier's.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Inactive strategies too.")] = False,
    tenant: TenantOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """The strategies of every tier (or of --scheme, --tier), by scheme, tier and priority."""
    from service.db.database import tenant_transaction
    from service.db.ids import codec
    from service.engine import schemes
    from service.engine import strategies as service

    config = load()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> tuple[list[service.Strategy], Ids]:
        async with tenant_transaction(engine, tenant_id) as connection:
            if scheme is not None:
                await schemes.find(connection, tenant_id, scheme)
            listed = await service.listed(
                connection, tenant_id, scheme=scheme, tier=tier, include_inactive=all_
            )
        return listed, (await codec(engine, config.id_key)).of(tenant_id)

    found, ids = run_with_engine(config, work)
    if output is OutputFormat.json:
        print_exact_json([_dict(s, ids) for s in found])
        return
    if not found:
        out.print("no strategies", highlight=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("scheme", "tier", "name", "channel", "priority", "active", "description"):
        table.add_column(column, justify="right" if column == "priority" else "left")
    for s in found:
        active = "yes" if s.active else "no"
        table.add_row(s.scheme, s.tier, s.name, s.channel, str(s.priority), active, s.description)
    out.print(table, highlight=False)


@strategies_app.command("save")
def save(
    scheme: SchemeOption,
    tier: TierOption,
    name: NameOption,
    channel: Annotated[
        str,
        typer.Option("--channel", help="How it reaches them: email, phone or sms, for example."),
    ],
    priority: Annotated[
        int, typer.Option("--priority", help="Lower comes first among a tier's strategies.")
    ] = 100,
    description: Annotated[
        str, typer.Option("--description", help="What is done, for the people doing it.")
    ] = "",
    parameters: Annotated[
        str, typer.Option("--parameters", help='A JSON object, e.g. {"discount": 10}.')
    ] = "{}",
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Keep it, but recommend it to no one.")
    ] = False,
    tenant: TenantOption = None,
) -> None:
    """Create a strategy, or update the one of the same scheme, tier and name."""
    from service.access import audit
    from service.db import exact
    from service.db.database import tenant_transaction
    from service.engine import strategies as service

    try:
        values = exact.loads(parameters)
    except ValueError as error:
        raise UserError(f"--parameters: not JSON: {error}") from None
    if not isinstance(values, dict):
        raise UserError('--parameters must be a JSON object, e.g. {"discount": 10}')
    from service.data.records import NEITHER, unstorable_in

    where = unstorable_in(values, "--parameters")
    if where is not None:
        raise UserError(f"{where}: {NEITHER}")
    config = load()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> service.Strategy:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await service.save(
                connection,
                tenant_id,
                scheme=scheme,
                tier=tier,
                name=name,
                channel=channel,
                description=description,
                priority=priority,
                parameters=values,
                active=not inactive,
                actor=audit.command_line_actor(),
            )

    saved = run_with_engine(config, work)
    out.print(
        f"saved strategy {saved.name!r} of {saved.scheme} {saved.tier} "
        f"({saved.channel}, priority {saved.priority}"
        f"{'' if saved.active else ', inactive'})",
        highlight=False,
        markup=False,
    )


@strategies_app.command("delete")
def delete(
    scheme: SchemeOption, tier: TierOption, name: NameOption, tenant: TenantOption = None
) -> None:
    """Delete the strategy of this scheme, tier and name."""
    from service.access import audit
    from service.db.database import tenant_transaction
    from service.engine import strategies as service

    config = load()
    tenant_id = tenant or config.default_tenant

    async def work(engine: AsyncEngine) -> None:
        async with tenant_transaction(engine, tenant_id) as connection:
            found = [
                s
                for s in await service.listed(
                    connection, tenant_id, scheme=scheme, tier=tier, include_inactive=True
                )
                if s.name == name
            ]
            if not found:
                raise NotFound(f"no strategy {name!r} of {scheme} {tier} in tenant {tenant_id!r}")
            await service.delete(
                connection, tenant_id, found[0].id, actor=audit.command_line_actor()
            )

    run_with_engine(config, work)
    out.print(f"deleted strategy {name!r} of {scheme} {tier}", highlight=False, markup=False)
