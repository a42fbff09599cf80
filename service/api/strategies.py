"""Strategies: what the business does for the customers of a tier. The `Strategy` type (also
recommended on customers and segments), listing, saving and deleting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from service.access.auth import Permission
from service.api.context import Info
from service.api.fields import arg, resolver, row_id, shown_id
from service.db.ids import Ids, RowKind
from service.engine import schemes
from service.engine import strategies as strategy_service
from service.errors import UserError


def _id(root: Strategy) -> strawberry.ID:
    return shown_id(root.ids, RowKind.strategy, root.number)


def _parameters(root: Strategy) -> JSON:
    return JSON(dict(root.stored_parameters))


@strawberry.type(description="What the business does for the customers of a tier.")
class Strategy:
    # The id (encrypted, `service.db.ids`) and the parameters (decoded) made when asked for:
    # a customer card's strategies are mostly shown by name.
    id: strawberry.ID = strawberry.field(
        resolver=_id, description="Identifier (for update and delete)."
    )
    scheme: str = strawberry.field(description="Key of the scheme of the tier.")
    tier: str = strawberry.field(description="The tier the strategy is for.")
    name: str = strawberry.field(description="Name, unique within the tier.")
    description: str = strawberry.field(description="What the strategy does, for people.")
    channel: str = strawberry.field(description="How it reaches the customer (email, phone, ...).")
    priority: int = strawberry.field(description="Lower comes first when recommending.")
    parameters: JSON = strawberry.field(
        resolver=_parameters, description="Free-form settings for the channel."
    )
    active: bool = strawberry.field(description="Inactive strategies are never recommended.")
    number: strawberry.Private[int]
    ids: strawberry.Private[Ids]
    stored_parameters: strawberry.Private[Mapping[str, Any]]

    @classmethod
    def of(cls, strategy: strategy_service.Strategy, ids: Ids) -> Strategy:
        return cls(
            number=strategy.id,
            ids=ids,
            scheme=strategy.scheme,
            tier=strategy.tier,
            name=strategy.name,
            description=strategy.description,
            channel=strategy.channel,
            priority=strategy.priority,
            stored_parameters=strategy.parameters,
            active=strategy.active,
        )


@strawberry.input(
    description="A strategy; saving one of the same scheme, tier and name updates it."
)
class StrategyInput:
    scheme: str = strawberry.field(description="Key of a published scheme.")
    tier: str = strawberry.field(description="One of its tiers.")
    name: str = strawberry.field(description="Name, unique within the tier.")
    channel: str = strawberry.field(description="How it reaches the customer.")
    description: str = strawberry.field(default="", description="What it does, for people.")
    priority: int = strawberry.field(default=100, description="Lower comes first.")
    parameters: JSON | None = strawberry.field(default=None, description="Settings: JSON object.")
    active: bool = strawberry.field(default=True, description="Inactive ones are not recommended.")


@strawberry.type
class StrategyQuery:
    @resolver(
        description="Active strategies (and inactive ones with `includeInactive`), "
        "optionally of one scheme and tier.",
        needs=Permission.read_reports,
    )
    async def strategies(
        self,
        info: Info,
        scheme: Annotated[str | None, arg("Only this scheme's.")] = None,
        tier: Annotated[str | None, arg("Only this tier's.")] = None,
        include_inactive: Annotated[
            bool, arg("Inactive strategies too (kept, recommended to no one).")
        ] = False,
    ) -> list[Strategy]:
        context = info.context
        async with context.transaction() as connection:
            if scheme is not None:
                await schemes.find(connection, context.tenant, scheme)
            found = await strategy_service.listed(
                connection,
                context.tenant,
                scheme=scheme,
                tier=tier,
                include_inactive=include_inactive,
            )
        ids = await context.ids()
        return [Strategy.of(s, ids) for s in found]


@strawberry.type
class StrategyMutation:
    @resolver(
        "Create a strategy, or update the one of the same scheme, tier and name. NOT_FOUND "
        "for a scheme or tier that is not published.",
        needs=Permission.manage_strategies,
    )
    async def save_strategy(
        self, info: Info, strategy: Annotated[StrategyInput, arg("The strategy.")]
    ) -> Strategy:
        context = info.context
        parameters: object = strategy.parameters if strategy.parameters is not None else {}
        if not isinstance(parameters, dict):
            raise UserError("`parameters` must be a JSON object")
        async with context.transaction() as connection:
            saved = await strategy_service.save(
                connection,
                context.tenant,
                scheme=strategy.scheme,
                tier=strategy.tier,
                name=strategy.name,
                channel=strategy.channel,
                description=strategy.description,
                priority=strategy.priority,
                parameters=parameters,
                active=strategy.active,
                actor=context.caller.actor,
            )
        return Strategy.of(saved, await context.ids())

    @resolver(
        "Delete a strategy; false when there was none of that id.",
        needs=Permission.manage_strategies,
    )
    async def delete_strategy(
        self, info: Info, id: Annotated[strawberry.ID, arg("The strategy's id.")]
    ) -> bool:
        context = info.context
        strategy_id = row_id(await context.ids(), RowKind.strategy, id, "id")
        if strategy_id is None:
            return False
        async with context.transaction() as connection:
            return await strategy_service.delete(
                connection, context.tenant, strategy_id, actor=context.caller.actor
            )
