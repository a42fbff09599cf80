"""Tier changes as they commit, live: the `tierChanged` subscription (see `feed` for how they
are heard). A customer's past changes are its `history` (`service.api.customers`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated

import strawberry

from service.access.auth import Permission
from service.api.context import Info
from service.api.customers import Transition
from service.api.errors import UNAVAILABLE, ApiError
from service.api.feed import FeedLost
from service.api.fields import arg, subscription
from service.api.text import require_storable


@strawberry.type
class TierChangeSubscription:
    @subscription(
        "Every tier change from now on (of `scheme`, or of every scheme), as it commits: "
        "from ingest, evaluations and publishing, on any replica.",
        needs=Permission.read_customers,
    )
    async def tier_changed(
        self, info: Info, scheme: Annotated[str | None, arg("Only this scheme's changes.")] = None
    ) -> AsyncGenerator[Transition, None]:
        context = info.context
        if scheme is not None:
            require_storable(scheme, "argument scheme")
        # Closed as soon as the client unsubscribes, not whenever the collector finds it.
        try:
            async with aclosing(context.feed.watch(context.tenant, scheme)) as rows:
                async for row in rows:
                    yield Transition.of(row)
        except FeedLost as lost:
            raise ApiError(UNAVAILABLE, f"{lost}: subscribe again") from None
