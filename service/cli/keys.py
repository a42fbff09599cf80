"""`tierwise keys create|list|revoke`: API keys for machine clients, from the command line.

The command line acts with the database's own rights, as ``cli:<os user>``: every create and
revoke is in the tenant's audit log under that name.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import TYPE_CHECKING, Annotated

import typer

from service.access.roles import Role
from service.cli.support import FormatOption, OutputFormat, TenantOption, out, run_with_engine
from service.cli.support import settings as load
from service.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.access.auth import ApiKey
    from service.config import Settings

# Authentication and the database are imported by the commands, when they run (see support).

keys_app = typer.Typer(
    rich_markup_mode=None,
    help="API keys for machine clients: shown once at creation, stored hashed, revocable.",
    no_args_is_help=True,
)


def _tenant(tenant: str | None, default: str) -> str:
    from service.data.records import FieldError, check_tenant_id  # reads the rule language

    try:
        return check_tenant_id(tenant or default)
    except FieldError as error:
        raise UserError(f"--tenant: {error}") from None


@keys_app.command("create")
def create(
    role: Annotated[
        Role, typer.Option("--role", help="What the key may do (see the README's role table).")
    ],
    tenant: TenantOption = None,
    name: Annotated[str, typer.Option("--name", help="What the key is for (e.g. erp-feed).")] = "",
) -> None:
    """Create a key and print it (the last word of the output). It is shown only now: only a
    hash of its secret is kept."""
    from service.access import audit
    from service.access.auth import create_key
    from service.db.database import tenant_transaction

    config = load()
    tenant_id = _tenant(tenant, config.default_tenant)

    async def work(engine: AsyncEngine) -> tuple[ApiKey, str]:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await create_key(
                connection, tenant_id, role, audit.command_line_actor(), name=name
            )

    key, plain = run_with_engine(config, work)
    out.print(
        f"created API key {key.id} ({key.role.value}) in tenant {tenant_id!r}; it is shown "
        "only now, store it safely:",
        highlight=False,
    )
    out.print(plain, highlight=False, markup=False)


@keys_app.command("list")
def list_(tenant: TenantOption = None, output: FormatOption = OutputFormat.text) -> None:
    """Every key of the tenant, revoked ones too (never their secrets)."""
    from rich.table import Table

    from service.access.auth import list_keys
    from service.db.database import tenant_transaction

    config = load()
    tenant_id = _tenant(tenant, config.default_tenant)

    async def work(engine: AsyncEngine) -> list[ApiKey]:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await list_keys(connection, tenant_id)

    found = run_with_engine(config, work)
    if output is OutputFormat.json:
        rows = [
            {
                **key.summary(),
                "created_at": key.created_at.isoformat(),
                "created_by": key.created_by,
            }
            for key in found
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table("id", "name", "role", "created", "by", "revoked")
    for key in found:
        table.add_row(
            key.id,
            key.name,
            key.role.value,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            key.created_by,
            "" if key.revoked_at is None else f"{key.revoked_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEYID", help="The key's id (`keys list`).")],
    tenant: TenantOption = None,
) -> None:
    """Revoke a key: refused from then on (by every replica within
    TIERWISE_API_KEY_CACHE_SECONDS)."""
    from service.access import audit
    from service.access.auth import revoke_key
    from service.db.database import tenant_transaction

    config = load()
    tenant_id = _tenant(tenant, config.default_tenant)

    async def work(engine: AsyncEngine) -> ApiKey | None:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await revoke_key(connection, tenant_id, key_id, audit.command_line_actor())

    revoked = run_with_engine(config, work)
    if revoked is None:
        raise UserError(f"no API key {key_id!r} in tenant {tenant_id!r}")
    out.print(f"API key {key_id} of tenant {tenant_id!r} revoked", highlight=False)


DEMO_TOKEN_LIFETIME = dt.timedelta(hours=12)


def demo_access(config: Settings) -> tuple[Settings, list[str]]:
    """The demo's settings and what to tell its user: with authentication on, a development
    token (admin of the demo tenant) signed by the configured TIERWISE_JWT_SECRET or, without
    one, by a secret made up for this process only."""
    from pydantic import SecretStr

    from service.access.auth import issue_token

    if not config.auth_required:
        return config, ["authentication is off (TIERWISE_AUTH_REQUIRED=false): no token needed"]
    if config.jwt_secret is None:
        generated = SecretStr(secrets.token_urlsafe(32))
        config = config.model_copy(update={"jwt_secret": generated})
    assert config.jwt_secret is not None
    token = issue_token(
        config.jwt_secret.get_secret_value(),
        config.default_tenant,
        Role.admin,
        "demo",
        lifetime=DEMO_TOKEN_LIFETIME,
    )
    header = json.dumps({"Authorization": f"Bearer {token}"})
    base = f"http://{config.host}:{config.port}"
    return config, [
        f"development token (admin of tenant {config.default_tenant!r}, valid 12 hours, only "
        "for this server):",
        f"export TOKEN={token}",
        # The token rides in the fragment, which browsers never send to the server.
        f"console: {base}/console#token={token}",
        f"GraphiQL: open {base}/graphql and paste into its Headers tab: {header}",
        f'curl: curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" '
        f'-d \'{{"query": "{{ schemes {{ key }} }}"}}\' {base}/graphql',
    ]
