"""Strategies: what the business does for the customers of a tier (a channel, a priority,
parameters), and the strategies recommended to one customer: those of their current tiers,
by priority."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Row, ScalarSelect, Text, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by, array_agg, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from service.access import audit
from service.db import exact
from service.db.database import Keyed, Record
from service.db.tables import memberships, strategies
from service.engine import schemes
from service.engine.templates import Template
from service.errors import UserError


@dataclass(frozen=True)
class Strategy:
    id: int
    scheme: str
    tier: str
    name: str
    description: str
    channel: str
    priority: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    active: bool = True


# `Strategy`'s fields, as the table's columns.
_STRATEGY_COLUMNS = (
    "id",
    "scheme_key",
    "tier",
    "name",
    "description",
    "channel",
    "priority",
    "parameters",
    "active",
)


def _strategy(row: Row[Any] | Record) -> Strategy:
    return Strategy(
        row.id,
        row.scheme_key,
        row.tier,
        row.name,
        row.description,
        row.channel,
        row.priority,
        row.parameters,
        row.active,
    )


async def save(
    connection: AsyncConnection,
    tenant: str,
    *,
    scheme: str,
    tier: str,
    name: str,
    channel: str,
    description: str = "",
    priority: int = 100,
    parameters: Mapping[str, Any] | None = None,
    active: bool = True,
    actor: audit.Actor = audit.SERVICE,
) -> Strategy:
    """Create the strategy, or update the one of that scheme, tier and name; audited as
    ``actor``'s change. Raises `UserError` without a name or channel, `NotFound` for a scheme
    or tier that is not published."""
    if not name.strip() or not channel.strip():
        raise UserError("a strategy needs a name and a channel")
    (await schemes.find(connection, tenant, scheme)).check_tier(tier)
    values = {
        "tenant_id": tenant,
        "scheme_key": scheme,
        "tier": tier,
        "name": name.strip(),
        "description": description,
        "channel": channel.strip(),
        "priority": priority,
        "parameters": dict(parameters or {}),
        "active": active,
    }
    previous = (
        await connection.execute(
            select(strategies)
            .where(
                strategies.c.tenant_id == tenant,
                strategies.c.scheme_key == scheme,
                strategies.c.tier == tier,
                strategies.c.name == values["name"],
            )
            .with_for_update()
        )
    ).one_or_none()
    # Citus allows only immutable functions in DO UPDATE: the time comes from the inserted row.
    upsert = insert(strategies).values({**values, "updated_at": func.now()})
    row = (
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["tenant_id", "scheme_key", "tier", "name"],
                set_={
                    **{k: upsert.excluded[k] for k in ("description", "channel", "priority")},
                    "parameters": upsert.excluded.parameters,
                    "active": upsert.excluded.active,
                    "updated_at": upsert.excluded.updated_at,
                },
            ).returning(strategies)
        )
    ).one()
    saved = _strategy(row)
    await audit.record(
        connection,
        tenant,
        actor,
        "strategy.create" if previous is None else "strategy.update",
        _target(saved),
        before=None if previous is None else _audited(_strategy(previous)),
        after=_audited(saved),
    )
    return saved


async def delete(
    connection: AsyncConnection,
    tenant: str,
    strategy_id: int,
    *,
    actor: audit.Actor = audit.SERVICE,
) -> bool:
    """Delete the strategy (False: the tenant has none of that id); audited as ``actor``'s."""
    row = (
        await connection.execute(
            strategies.delete()
            .where(strategies.c.tenant_id == tenant, strategies.c.id == strategy_id)
            .returning(strategies)
        )
    ).one_or_none()
    if row is None:
        return False
    deleted = _strategy(row)
    await audit.record(
        connection, tenant, actor, "strategy.delete", _target(deleted), before=_audited(deleted)
    )
    return True


def _target(strategy: Strategy) -> str:
    return f"{strategy.scheme}/{strategy.tier}/{strategy.name}"


def _audited(strategy: Strategy) -> dict[str, Any]:
    return {
        "id": strategy.id,
        "scheme": strategy.scheme,
        "tier": strategy.tier,
        "name": strategy.name,
        "description": strategy.description,
        "channel": strategy.channel,
        "priority": strategy.priority,
        "parameters": dict(strategy.parameters),
        "active": strategy.active,
    }


async def listed(
    connection: AsyncConnection,
    tenant: str,
    *,
    scheme: str | None = None,
    tier: str | None = None,
    include_inactive: bool = False,
) -> list[Strategy]:
    query = select(strategies).where(strategies.c.tenant_id == tenant)
    if scheme is not None:
        query = query.where(strategies.c.scheme_key == scheme)
    if tier is not None:
        query = query.where(strategies.c.tier == tier)
    if not include_inactive:
        query = query.where(strategies.c.active)
    query = query.order_by(
        strategies.c.scheme_key, strategies.c.tier, strategies.c.priority, strategies.c.id
    )
    return [_strategy(row) for row in await connection.execute(query)]


RECOMMENDED = Keyed.of(
    lambda matches: (
        select(memberships.c.customer_id, strategies)
        .join(
            strategies,
            (strategies.c.tenant_id == memberships.c.tenant_id)
            & (strategies.c.scheme_key == memberships.c.scheme_key)
            & (strategies.c.tier == memberships.c.tier),
        )
        .where(
            memberships.c.tenant_id == bindparam("tenant"),
            matches(memberships.c.customer_id),
            strategies.c.active,
        )
        .order_by(memberships.c.customer_id, strategies.c.priority, strategies.c.id)
    )
)


def first_of_each(found: Iterable[Strategy]) -> list[Strategy]:
    """Strategies by priority, each name and channel once: a strategy of the same name and
    channel in the tiers of two schemes (the templates' win-back offer) is recommended once,
    at its first priority."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for strategy in found:
        if (strategy.name, strategy.channel) not in seen:
            seen.add((strategy.name, strategy.channel))
            kept.append(strategy)
    return kept


async def recommended(
    connection: AsyncConnection, tenant: str, customer_ids: Sequence[int]
) -> dict[int, list[Strategy]]:
    """Each customer's active strategies of their current tiers, by priority (one query for
    any number of customers; compiled once), each name and channel once (`first_of_each`)."""
    found: dict[int, list[Strategy]] = {customer: [] for customer in customer_ids}
    for row in await RECOMMENDED.fetch(connection, customer_ids, tenant=tenant):
        found[row.customer_id].append(_strategy(row))
    return {customer: first_of_each(listed) for customer, listed in found.items()}


def recommended_rows(tenant: ColumnElement[Any], customer: ColumnElement[Any]) -> ScalarSelect[Any]:
    """`recommended` of one customer inside another statement (the customer card reads its
    customer, tiers and strategies in one): an array of rows (`from_rows`), by priority; null
    for none. The parameters come as text (a jsonb inside a row does not decode as one)."""
    columns: list[ColumnElement[Any]] = [
        strategies.c.parameters.cast(Text) if name == "parameters" else strategies.c[name]
        for name in _STRATEGY_COLUMNS
    ]
    in_order = aggregate_order_by(tuple_(*columns), strategies.c.priority, strategies.c.id)
    return (
        select(array_agg(in_order))  # type: ignore[no-untyped-call]
        .select_from(memberships)
        .join(
            strategies,
            (strategies.c.tenant_id == memberships.c.tenant_id)
            & (strategies.c.scheme_key == memberships.c.scheme_key)
            & (strategies.c.tier == memberships.c.tier),
        )
        .where(
            memberships.c.tenant_id == tenant,
            memberships.c.customer_id == customer,
            strategies.c.active,
        )
        .scalar_subquery()
    )


def from_rows(rows: Sequence[tuple[Any, ...]] | None) -> list[Strategy]:
    """The strategies of a `recommended_rows` array, each name and channel once."""
    return first_of_each(
        Strategy(
            id=row[0],
            scheme=row[1],
            tier=row[2],
            name=row[3],
            description=row[4],
            channel=row[5],
            priority=row[6],
            parameters=exact.StoredObject(row[7]),  # decoded when read
            active=row[8],
        )
        for row in rows or ()
    )


async def install_template(
    connection: AsyncConnection,
    tenant: str,
    template: Template,
    *,
    actor: audit.Actor = audit.SERVICE,
) -> int:
    """The template's default strategies (existing ones of the same names are updated)."""
    for spec in template.strategies:
        await save(
            connection,
            tenant,
            scheme=template.key,
            tier=spec.tier,
            name=spec.name,
            channel=spec.channel,
            description=spec.description,
            priority=spec.priority,
            parameters=spec.parameters,
            actor=actor,
        )
    return len(template.strategies)
