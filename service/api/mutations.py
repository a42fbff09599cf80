"""The Mutation root: ingest with per-row errors, publishing, strategies, evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl import RuleError
from service.access.auth import Permission
from service.api.context import Info
from service.api.errors import LIMIT_EXCEEDED, ApiError, bad_input, bad_rule, not_found
from service.api.fields import arg, resolver
from service.api.inputs import (
    FIELD_NAMES,
    CustomerInput,
    EventInput,
    OrderInput,
    StrategyInput,
    customer_row,
    event_row,
    order_row,
)
from service.api.keys import KeyMutation
from service.api.types import (
    Diagnostic,
    EvaluationRun,
    IngestResult,
    PublishResult,
    RowError,
    Scheme,
    Strategy,
)
from service.api.webhooks import WebhookMutation
from service.data.ingest import import_rows
from service.data.records import Kind
from service.engine import evaluation, schemes, strategies
from service.errors import UserError

T = TypeVar("T")


async def _ingest(
    info: Info, kind: Kind, items: Sequence[T], to_row: Callable[[T], Mapping[str, Any]]
) -> IngestResult:
    context = info.context
    limit = context.settings.max_ingest_rows
    if len(items) > limit:
        raise ApiError(LIMIT_EXCEEDED, f"{len(items)} rows in one request, at most {limit} allowed")
    changes: list[int] = []

    async def refresh(connection: AsyncConnection, tenant: str) -> None:
        # Tiers follow the new data in the same transaction; each change is also announced
        # to tierChanged subscribers when it commits.
        changes.append(await evaluation.refresh_affected(connection, tenant, trigger="api"))

    try:
        result, bad = await import_rows(
            context.engine,
            kind,
            context.tenant,
            ((index, to_row(item)) for index, item in enumerate(items)),
            source=f"{kind} input",
            skip_bad=True,
            after_load=refresh,
        )
    except UserError as error:
        raise bad_input(str(error)) from None
    names = FIELD_NAMES[kind]
    return IngestResult(
        received=len(items),
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        rejected=len(bad),
        customers_created=result.customers_created,
        tier_changes=sum(changes),
        errors=[
            RowError(
                row=error.line,
                field=None if error.field is None else names.get(error.field, error.field),
                message=error.message,
            )
            for row in bad
            for error in row.errors
        ],
    )


@strawberry.type(description="Writing data, rules and strategies.")
class Mutation(WebhookMutation, KeyMutation):
    @resolver(
        "Create or replace customers by id (idempotent). Valid rows are written even when "
        "others are not; each problem is reported with its row and field.",
        needs=Permission.write_data,
    )
    async def upsert_customers(
        self,
        info: Info,
        customers: Annotated[list[CustomerInput], arg("Checked row by row.")],
    ) -> IngestResult:
        return await _ingest(info, Kind.customers, customers, customer_row)

    @resolver(
        "Record orders by id (idempotent); the customers' tiers follow at once, and each "
        "change is announced on tierChanged.",
        needs=Permission.write_data,
    )
    async def record_orders(
        self, info: Info, orders: Annotated[list[OrderInput], arg("Checked row by row.")]
    ) -> IngestResult:
        return await _ingest(info, Kind.orders, orders, order_row)

    @resolver(
        "Record behaviour events (idempotent by id, or by content without one); tiers follow.",
        needs=Permission.write_data,
    )
    async def record_events(
        self, info: Info, events: Annotated[list[EventInput], arg("Checked row by row.")]
    ) -> IngestResult:
        return await _ingest(info, Kind.events, events, event_row)

    @resolver(
        "Publish rules as scheme `key` (a bare list of tiers, or a `scheme key { ... }` "
        "block); a new version only when the text changed. With `evaluate`, the new rules "
        "are made current at once. Bad rules give a BAD_RULE error and change nothing.",
        needs=Permission.publish_rules,
    )
    async def publish_scheme(
        self,
        info: Info,
        key: Annotated[str, arg("The scheme's key.")],
        source: Annotated[str, arg("Rule text: tiers, or one `scheme key { ... }` block.")],
        evaluate: Annotated[bool, arg("Make the new rules current at once.")] = True,
    ) -> PublishResult:
        context = info.context
        try:
            async with context.transaction() as connection:
                published = await schemes.publish(
                    connection,
                    context.tenant,
                    source,
                    file=f"{key}.rules",
                    scheme_key=key,
                    actor=context.caller.actor,
                )
        except RuleError as error:
            raise bad_rule(error) from None
        except UserError as error:
            raise bad_input(str(error)) from None
        (scheme,) = published.schemes
        runs = []
        if evaluate and published.changed:
            runs = await evaluation.evaluate_all(
                context.engine, context.tenant, keys=[key], trigger="api"
            )
        return PublishResult(
            scheme=Scheme.of(scheme),
            changed=key in published.changed,
            warnings=[Diagnostic.of(d) for d in published.warnings.warnings],
            runs=[EvaluationRun.of(run) for run in runs],
        )

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
            raise bad_input("`parameters` must be a JSON object")
        try:
            async with context.transaction() as connection:
                saved = await strategies.save(
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
        except UserError as error:
            raise not_found(str(error)) from None
        return Strategy.of(saved)

    @resolver(
        "Delete a strategy; false when there was none of that id.",
        needs=Permission.manage_strategies,
    )
    async def delete_strategy(
        self, info: Info, id: Annotated[strawberry.ID, arg("The strategy's id.")]
    ) -> bool:
        context = info.context
        try:
            strategy_id = int(id)
        except ValueError:
            return False
        async with context.transaction() as connection:
            return await strategies.delete(
                connection, context.tenant, strategy_id, actor=context.caller.actor
            )

    @resolver(
        "Evaluate a scheme now (and the schemes that read its tiers): tiers become current "
        "and every change is recorded and announced. NOT_FOUND for an unpublished scheme.",
        needs=Permission.publish_rules,
    )
    async def evaluate_scheme(
        self, info: Info, scheme: Annotated[str, arg("Key of a published scheme.")]
    ) -> list[EvaluationRun]:
        context = info.context
        try:
            runs = await evaluation.evaluate_all(
                context.engine, context.tenant, keys=[scheme], trigger="api"
            )
        except UserError as error:
            raise not_found(str(error)) from None
        if not runs:
            raise not_found(f"no published scheme {scheme!r}")
        return [EvaluationRun.of(run) for run in runs]
