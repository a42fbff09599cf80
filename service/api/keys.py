"""API keys over GraphQL, admin only (`manage_keys`): list, create (the key shown once) and
revoke, each audited. The same operations as `tierwise keys`; mixed into the roots."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import strawberry

from service.access import auth
from service.access.auth import Permission
from service.api.access import Role
from service.api.context import Info
from service.api.fields import arg, resolver
from service.errors import NotFound

MANAGE = Permission.manage_keys


@strawberry.type(description="A long-lived key for a machine client (never its secret).")
class ApiKey:
    id: str = strawberry.field(description="The key's id: the part after the tenant in the key.")
    name: str = strawberry.field(description="What it is for.")
    role: Role = strawberry.field(description="The role it acts in.")
    created_at: dt.datetime = strawberry.field(description="When it was created.")
    created_by: str = strawberry.field(description="Who created it.")
    revoked_at: dt.datetime | None = strawberry.field(
        description="When it was revoked; null while it works."
    )

    @classmethod
    def of(cls, key: auth.ApiKey) -> ApiKey:
        return cls(
            id=key.id,
            name=key.name,
            role=Role(key.role),
            created_at=key.created_at,
            created_by=key.created_by,
            revoked_at=key.revoked_at,
        )


@strawberry.type(description="A new API key and the key itself, shown this once.")
class CreatedApiKey:
    api_key: ApiKey = strawberry.field(description="The key as stored.")
    key: str = strawberry.field(
        description="The key for `Authorization: Bearer ...`. Only a hash is kept: it cannot "
        "be shown again."
    )


@strawberry.type
class KeyQuery:
    @resolver("The tenant's API keys, revoked ones too, oldest first.", needs=MANAGE)
    async def api_keys(self, info: Info) -> list[ApiKey]:
        context = info.context
        async with context.transaction() as connection:
            return [ApiKey.of(key) for key in await auth.list_keys(connection, context.tenant)]


@strawberry.type
class KeyMutation:
    @resolver(
        "Create an API key for the tenant; the answer holds the key, shown this once.",
        needs=MANAGE,
    )
    async def create_api_key(
        self,
        info: Info,
        role: Annotated[Role, arg("The role it acts in.")],
        name: Annotated[str, arg("What it is for (shown in listings).")] = "",
    ) -> CreatedApiKey:
        context = info.context
        async with context.transaction() as connection:
            key, plain = await auth.create_key(
                connection, context.tenant, auth.Role(role.value), context.caller.actor, name=name
            )
        return CreatedApiKey(api_key=ApiKey.of(key), key=plain)

    @resolver(
        "Revoke an API key (it stops working within TIERWISE_API_KEY_CACHE_SECONDS); "
        "NOT_FOUND for no key of that id.",
        needs=MANAGE,
    )
    async def revoke_api_key(self, info: Info, id: Annotated[str, arg("The key's id.")]) -> ApiKey:
        context = info.context
        async with context.transaction() as connection:
            revoked = await auth.revoke_key(connection, context.tenant, id, context.caller.actor)
        if revoked is None:
            raise NotFound(f"no API key {id!r}")
        return ApiKey.of(revoked)
