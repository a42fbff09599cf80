"""Webhooks over GraphQL: register, list and delete endpoints, read and replay deliveries.
Admin only (`manage_webhooks`). The fields are mixed into the Query and Mutation roots."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from service.access.auth import Permission
from service.api.context import Info
from service.api.fields import arg, known_id, resolver, row_id, shown_id
from service.api.limits import page_size
from service.db.ids import Ids, RowKind
from service.engine import webhooks as hooks

MANAGE = Permission.manage_webhooks


@strawberry.type(description="An endpoint that receives the tenant's tier changes.")
class Webhook:
    id: strawberry.ID = strawberry.field(description="The webhook's id.")
    url: str = strawberry.field(description="Where each change is POSTed (HTTPS).")
    scheme: str | None = strawberry.field(
        description="Only changes in this scheme; null: every scheme."
    )
    tier: str | None = strawberry.field(
        description="Only changes entering or leaving this tier; null: every tier."
    )
    active: bool = strawberry.field(description="False once deleted: it gets nothing more.")
    created_at: dt.datetime = strawberry.field(description="When it was registered.")
    created_by: str = strawberry.field(description="Who registered it.")

    @classmethod
    def of(cls, webhook: hooks.Webhook, ids: Ids) -> Webhook:
        return cls(
            id=shown_id(ids, RowKind.webhook, webhook.id),
            url=webhook.url,
            scheme=webhook.scheme,
            tier=webhook.tier,
            active=webhook.active,
            created_at=webhook.created_at,
            created_by=webhook.created_by,
        )


@strawberry.type(description="A webhook just registered, with its signing secret.")
class CreatedWebhook:
    webhook: Webhook = strawberry.field(description="The webhook.")
    secret: str = strawberry.field(
        description="The secret deliveries are signed with (HMAC-SHA256, see docs/webhooks.md). "
        "Shown only here, once: keep it."
    )


@strawberry.enum(description="Where a delivery stands.")
class WebhookDeliveryStatus(enum.Enum):
    PENDING = strawberry.enum_value("pending", description="Not yet delivered; will be tried.")
    DELIVERED = strawberry.enum_value("delivered", description="The receiver answered 2xx.")
    DEAD = strawberry.enum_value(
        "dead", description="Out of attempts (or its webhook was deleted); can be replayed."
    )


@strawberry.type(description="One tier change on its way to one webhook (the outbox).")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="The delivery's id (for replaying it).")
    webhook_id: strawberry.ID = strawberry.field(description="The webhook it goes to.")
    event_id: str = strawberry.field(
        description="The event's id, the same in every attempt: receivers drop repeats of it."
    )
    payload: JSON = strawberry.field(description="The JSON body POSTed to the receiver.")
    status: WebhookDeliveryStatus = strawberry.field(description="Where it stands.")
    attempts: int = strawberry.field(description="Attempts made so far.")
    next_attempt_at: dt.datetime = strawberry.field(
        description="When a pending delivery is tried next."
    )
    last_error: str | None = strawberry.field(
        description="Why the last failed attempt failed (status and start of the body, timeout "
        "or connection error); null once delivered."
    )
    last_status: int | None = strawberry.field(
        description="The HTTP status of the last answer; null without one."
    )
    created_at: dt.datetime = strawberry.field(description="When the change was recorded.")
    delivered_at: dt.datetime | None = strawberry.field(
        description="When the receiver accepted it."
    )

    @classmethod
    def of(cls, delivery: hooks.Delivery, ids: Ids) -> WebhookDelivery:
        return cls(
            id=shown_id(ids, RowKind.delivery, delivery.id),
            webhook_id=shown_id(ids, RowKind.webhook, delivery.webhook_id),
            event_id=delivery.event_id,
            payload=JSON(delivery.payload),
            status=WebhookDeliveryStatus[delivery.status.upper()],
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_error=delivery.last_error,
            last_status=delivery.last_status,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
        )


@strawberry.type
class WebhookQuery:
    @resolver("The tenant's webhooks, oldest first.", needs=MANAGE)
    async def webhooks(
        self,
        info: Info,
        include_deleted: Annotated[bool, arg("Also the deleted (inactive) ones.")] = False,
    ) -> list[Webhook]:
        context = info.context
        async with context.transaction() as connection:
            found = await hooks.list_webhooks(
                connection, context.tenant, include_deleted=include_deleted
            )
        ids = await context.ids()
        return [Webhook.of(webhook, ids) for webhook in found]

    @resolver("Webhook deliveries, newest first.", needs=MANAGE)
    async def webhook_deliveries(
        self,
        info: Info,
        status: Annotated[WebhookDeliveryStatus | None, arg("Only these.")] = None,
        webhook_id: Annotated[strawberry.ID | None, arg("Only this webhook's.")] = None,
        first: Annotated[int, arg("How many (at most TIERWISE_MAX_PAGE_SIZE).")] = 50,
        before: Annotated[
            strawberry.ID | None, arg("Older than this delivery id (the last of a page).")
        ] = None,
    ) -> list[WebhookDelivery]:
        context = info.context
        page_size(context.settings, "first", first)
        ids = await context.ids()
        hook = None
        if webhook_id is not None:
            hook = known_id(ids, RowKind.webhook, webhook_id, "webhookId")
        before_id = None if before is None else known_id(ids, RowKind.delivery, before, "before")
        async with context.transaction() as connection:
            found = await hooks.deliveries(
                connection,
                context.tenant,
                status=None if status is None else status.name.lower(),
                webhook_id=hook,
                limit=first,
                before_id=before_id,
            )
        return [WebhookDelivery.of(delivery, ids) for delivery in found]


@strawberry.type
class WebhookMutation:
    @resolver(
        "Register an HTTPS endpoint for tier changes, optionally only of one scheme and only "
        "those entering or leaving one tier. The answer holds the signing secret, shown this "
        "once. BAD_INPUT for a bad URL; NOT_FOUND for an unpublished scheme or tier.",
        needs=MANAGE,
    )
    async def create_webhook(
        self,
        info: Info,
        url: Annotated[str, arg("The endpoint: https:// (http:// only where allowed).")],
        scheme: Annotated[str | None, arg("Only changes in this scheme.")] = None,
        tier: Annotated[str | None, arg("Only changes entering or leaving this tier.")] = None,
        secret: Annotated[
            str | None, arg("The signing secret to use (at least 16 characters); default: new.")
        ] = None,
    ) -> CreatedWebhook:
        context = info.context
        async with context.transaction() as connection:
            created = await hooks.create(
                connection,
                context.tenant,
                context.caller.actor,
                url=url,
                scheme=scheme,
                tier=tier,
                secret=secret,
                allow_http=context.settings.webhook_allow_http,
                allow_private=context.settings.webhook_allow_private,
            )
        return CreatedWebhook(
            webhook=Webhook.of(created.webhook, await context.ids()), secret=created.secret
        )

    @resolver(
        "Delete a webhook: nothing more is sent to it, its pending deliveries become dead. "
        "False when there was no active webhook of that id.",
        needs=MANAGE,
    )
    async def delete_webhook(
        self, info: Info, id: Annotated[strawberry.ID, arg("The webhook's id.")]
    ) -> bool:
        context = info.context
        webhook_id = row_id(await context.ids(), RowKind.webhook, id, "id")
        if webhook_id is None:
            return False
        async with context.transaction() as connection:
            return await hooks.delete(connection, context.tenant, context.caller.actor, webhook_id)

    @resolver(
        "Send a dead delivery again, with a fresh set of attempts. NOT_FOUND for no such "
        "delivery; BAD_INPUT unless it is dead and its webhook active.",
        needs=MANAGE,
    )
    async def replay_webhook_delivery(
        self, info: Info, id: Annotated[strawberry.ID, arg("The delivery's id.")]
    ) -> WebhookDelivery:
        context = info.context
        ids = await context.ids()
        delivery_id = known_id(ids, RowKind.delivery, id, "id")
        async with context.transaction() as connection:
            replayed = await hooks.replay(
                connection, context.tenant, context.caller.actor, delivery_id
            )
        return WebhookDelivery.of(replayed, ids)

    @resolver(
        "Send every dead delivery of a webhook again; returns how many. NOT_FOUND for no "
        "active webhook of that id.",
        needs=MANAGE,
    )
    async def replay_dead_deliveries(
        self, info: Info, webhook_id: Annotated[strawberry.ID, arg("The webhook's id.")]
    ) -> int:
        context = info.context
        number = known_id(await context.ids(), RowKind.webhook, webhook_id, "webhookId")
        async with context.transaction() as connection:
            return await hooks.replay_dead(connection, context.tenant, context.caller.actor, number)
