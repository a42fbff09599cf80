"""Batched reads for everything resolved per node (tiers, strategies, metric values, history,
explanations, customers by id): one query per batch, run in a turn on the request's
connection (`RequestConnection.turn`): concurrently dispatched batches take turns, so no
AsyncConnection is ever used by two of them at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Integer,
    Row,
    ScalarSelect,
    Select,
    Text,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, array_agg
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.dataloader import DataLoader

from dsl import CATALOG, MetricRef, Value, metric_values_select
from dsl.explain import Explanation, explain
from service.db.database import Keyed, Record, is_citus
from service.db.tables import customers, memberships, transitions
from service.engine import schemes, strategies
from service.engine.sources import kept_members, tenant_sources
from service.engine.strategies import Strategy

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# The metric values a customer card shows: all-time, of this customer alone.
CARD_METRICS: tuple[MetricRef, ...] = (
    *(
        MetricRef(name)
        for name in (
            "recency",
            "frequency",
            "monetary",
            "average_order_value",
            "first_purchase",
            "last_purchase",
            "tenure",
            "nps",
            "refunds",
            "returns",
        )
    ),
    MetricRef("p_alive"),
    MetricRef("expected_orders", window_days=365),
    MetricRef("expected_order_value"),
    MetricRef("clv", window_days=365),
)
assert all(ref.name in CATALOG for ref in CARD_METRICS)


@dataclass(frozen=True)
class MembershipRow:
    scheme: str
    tier: str
    since: dt.datetime
    version: int


@dataclass(frozen=True)
class CustomerCard:
    """A customer read by `CUSTOMER_CARDS`, with its tiers and recommended strategies; those
    are None where the card was read without them (on Citus: their loaders read them)."""

    row: Record
    tiers: list[MembershipRow] | None
    strategies: list[Strategy] | None


@dataclass(frozen=True)
class TransitionRow:
    id: int
    scheme: str
    number: int
    """Counted per tenant and scheme: what clients see (``id`` is global)."""
    customer_id: int
    customer_external_id: str
    from_tier: str | None
    to_tier: str | None
    at: dt.datetime
    version: int
    run_id: int | None
    trigger: str


def transitions_select() -> Select[Any]:
    return select(
        transitions.c.id,
        transitions.c.scheme_key,
        transitions.c.number,
        transitions.c.customer_id,
        customers.c.external_id,
        transitions.c.from_tier,
        transitions.c.to_tier,
        transitions.c.at,
        transitions.c.version,
        transitions.c.run_id,
        transitions.c.trigger,
    ).join(
        customers,
        (customers.c.tenant_id == transitions.c.tenant_id)
        & (customers.c.id == transitions.c.customer_id),
    )


def transition_row(row: Row[Any]) -> TransitionRow:
    return TransitionRow(
        id=row.id,
        scheme=row.scheme_key,
        number=row.number,
        customer_id=row.customer_id,
        customer_external_id=row.external_id,
        from_tier=row.from_tier,
        to_tier=row.to_tier,
        at=row.at,
        version=row.version,
        run_id=row.run_id,
        trigger=row.trigger,
    )


async def metric_values(
    connection: AsyncConnection,
    tenant: str,
    refs: Sequence[MetricRef],
    ids: Sequence[int],
    *,
    population: bool,
    as_of: dt.datetime,
) -> dict[int, dict[MetricRef, Value]]:
    """Metric values of the customers ``ids``; with ``population``, computed over the whole
    tenant (scores and percentiles rank everyone) and then picked."""
    sources = tenant_sources(tenant) if population else tenant_sources(tenant, customer_ids=ids)
    statement = metric_values_select(refs, sources, as_of)
    statement = statement.where(statement.selected_columns.customer_id.in_(ids))
    return {
        row[0]: dict(zip(refs, row[1:], strict=True)) for row in await connection.execute(statement)
    }


# The customer card's reads (a customer by id, its tiers, its strategies: see
# `service.engine.strategies.recommended`), compiled once and run by asyncpg.
CUSTOMERS_BY_EXTERNAL_ID = Keyed.of(
    lambda matches: select(customers).where(
        customers.c.tenant_id == bindparam("tenant"), matches(customers.c.external_id)
    )
)


def _tier_rows() -> ScalarSelect[Any]:
    """A customer's memberships (`MembershipRow`'s fields) as one array of rows, by scheme;
    null for none."""
    return (
        select(
            array_agg(  # type: ignore[no-untyped-call]
                aggregate_order_by(
                    tuple_(
                        memberships.c.scheme_key,
                        memberships.c.tier,
                        memberships.c.since,
                        memberships.c.version,
                    ),
                    memberships.c.scheme_key,
                )
            )
        )
        .where(
            memberships.c.tenant_id == customers.c.tenant_id,
            memberships.c.customer_id == customers.c.id,
        )
        .scalar_subquery()
    )


# The customer card in one statement: the customer by external id with its tiers and its
# recommended strategies (the same rows as `CUSTOMER_TIERS` and `strategies.recommended`),
# which the customer's fields then return as they are (`CustomerCard`): one statement and one
# batch where three took turns. Read whether or not the query asks for them: two index
# lookups cost less than a batch of their own.
CUSTOMER_CARDS = Keyed.of(
    lambda matches: select(
        customers,
        _tier_rows().label("tier_rows"),
        strategies.recommended_rows(customers.c.tenant_id, customers.c.id).label("strategy_rows"),
    ).where(customers.c.tenant_id == bindparam("tenant"), matches(customers.c.external_id))
)
CUSTOMER_TIERS = Keyed.of(
    lambda matches: (
        select(
            memberships.c.customer_id,
            memberships.c.scheme_key,
            memberships.c.tier,
            memberships.c.since,
            memberships.c.version,
        )
        .where(memberships.c.tenant_id == bindparam("tenant"), matches(memberships.c.customer_id))
        .order_by(memberships.c.customer_id, memberships.c.scheme_key)
    )
)


class Loaders:
    """This request's DataLoaders, each made when the request first asks for it (a customer
    card needs one of the nine)."""

    def __init__(
        self, turn: Callable[[], AbstractAsyncContextManager[AsyncConnection]], tenant: str
    ) -> None:
        self.turn = turn
        self.tenant = tenant

    @cached_property
    def customer_by_external_id(self) -> DataLoader[str, Record | None]:
        return self._loader(self._customers_by_external_id)

    @cached_property
    def customer_card(self) -> DataLoader[str, CustomerCard | None]:
        return self._loader(self._customer_cards)

    @cached_property
    def customer_by_id(self) -> DataLoader[int, Row[Any] | None]:
        return self._loader(self._customers_by_id)

    @cached_property
    def tiers(self) -> DataLoader[int, list[MembershipRow]]:
        return self._loader(self._tiers)

    @cached_property
    def strategies(self) -> DataLoader[int, list[Strategy]]:
        return self._loader(self._strategies)

    @cached_property
    def tier_strategies(self) -> DataLoader[tuple[str, str], list[Strategy]]:
        return self._loader(self._tier_strategies)

    @cached_property
    def metrics(self) -> DataLoader[int, dict[MetricRef, Value]]:
        return self._loader(self._metrics)

    @cached_property
    def history(self) -> DataLoader[tuple[int, str | None, int], list[TransitionRow]]:
        return self._loader(self._history)

    @cached_property
    def explanations(self) -> DataLoader[tuple[int, str], Explanation]:
        return self._loader(self._explanations)

    def _loader(
        self,
        fetch: Callable[
            [AsyncConnection, list[K]], Coroutine[Any, Any, Mapping[K, V | BaseException]]
        ],
    ) -> DataLoader[K, V]:
        # A key's exception (e.g. NOT_FOUND) is raised by `load` for that key alone.
        async def batch(keys: list[K]) -> list[V | BaseException]:
            async with self.turn() as connection:
                found = await fetch(connection, keys)
            return [found[key] for key in keys]

        return DataLoader(load_fn=batch)

    async def _customers_by_external_id(
        self, connection: AsyncConnection, keys: list[str]
    ) -> dict[str, Record | None]:
        found: dict[str, Record | None] = dict.fromkeys(keys)
        for row in await CUSTOMERS_BY_EXTERNAL_ID.fetch(connection, keys, tenant=self.tenant):
            found[row.external_id] = row
        return found

    async def _customer_cards(
        self, connection: AsyncConnection, keys: list[str]
    ) -> dict[str, CustomerCard | None]:
        found: dict[str, CustomerCard | None] = dict.fromkeys(keys)
        if await is_citus(connection):
            # A Citus coordinator cannot read the card's arrays of rows back from a worker
            # ("input of anonymous composite types is not implemented"): the customer alone,
            # and the tiers and strategies loaders read theirs.
            for key, row in (await self._customers_by_external_id(connection, keys)).items():
                found[key] = None if row is None else CustomerCard(row, None, None)
            return found
        for row in await CUSTOMER_CARDS.fetch(connection, keys, tenant=self.tenant):
            found[row.external_id] = CustomerCard(
                row,
                [MembershipRow(*values) for values in row.tier_rows or ()],
                strategies.from_rows(row.strategy_rows),
            )
        return found

    async def _customers_by_id(
        self, connection: AsyncConnection, keys: list[int]
    ) -> dict[int, Row[Any] | None]:
        rows = await connection.execute(
            select(customers).where(customers.c.tenant_id == self.tenant, customers.c.id.in_(keys))
        )
        found: dict[int, Row[Any] | None] = dict.fromkeys(keys)
        found.update((row.id, row) for row in rows)
        return found

    async def _tiers(
        self, connection: AsyncConnection, keys: list[int]
    ) -> dict[int, list[MembershipRow]]:
        found: dict[int, list[MembershipRow]] = {key: [] for key in keys}
        for row in await CUSTOMER_TIERS.fetch(connection, keys, tenant=self.tenant):
            found[row[0]].append(MembershipRow(*row[1:]))
        return found

    async def _strategies(
        self, connection: AsyncConnection, keys: list[int]
    ) -> dict[int, list[Strategy]]:
        return await strategies.recommended(connection, self.tenant, keys)

    async def _tier_strategies(
        self, connection: AsyncConnection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Strategy]]:
        found: dict[tuple[str, str], list[Strategy]] = {key: [] for key in keys}
        for strategy in await strategies.listed(connection, self.tenant):
            found.get((strategy.scheme, strategy.tier), []).append(strategy)
        for listed in found.values():
            listed.sort(key=lambda s: (s.priority, s.id))
        return found

    async def _metrics(
        self, connection: AsyncConnection, keys: list[int]
    ) -> dict[int, dict[MetricRef, Value]]:
        values = await metric_values(
            connection,
            self.tenant,
            CARD_METRICS,
            keys,
            population=False,
            as_of=dt.datetime.now(dt.UTC),
        )
        return {key: values.get(key, {}) for key in keys}

    async def _history(
        self, connection: AsyncConnection, keys: list[tuple[int, str | None, int]]
    ) -> dict[tuple[int, str | None, int], list[TransitionRow] | BaseException]:
        """The newest ``last`` changes of each (customer, scheme or every scheme, last), oldest
        first: one statement, each key's rows read by index and cut off in the database (and
        one more when schemes are named: an unpublished one is NOT_FOUND, not no changes)."""
        asked = (
            select(
                func.unnest(literal([k[0] for k in keys], ARRAY(BigInteger))).label("customer_id"),
                func.unnest(literal([k[1] for k in keys], ARRAY(Text))).label("scheme"),
                func.unnest(literal([k[2] for k in keys], ARRAY(Integer))).label("last"),
            )
        ).subquery("asked")
        newest = (
            transitions_select()
            .add_columns(asked.c.scheme.label("asked_scheme"), asked.c.last.label("asked_last"))
            .where(
                transitions.c.tenant_id == self.tenant,
                transitions.c.customer_id == asked.c.customer_id,
                or_(asked.c.scheme.is_(None), transitions.c.scheme_key == asked.c.scheme),
            )
            .order_by(transitions.c.id.desc())
            .limit(asked.c.last)
            .lateral("newest")
        )
        rows = await connection.execute(
            select(newest).select_from(asked).join(newest, true()).order_by(newest.c.id)
        )
        changes: dict[tuple[int, str | None, int], list[TransitionRow]] = {key: [] for key in keys}
        for row in rows:
            changes[(row.customer_id, row.asked_scheme, row.asked_last)].append(transition_row(row))
        named = {scheme for _, scheme, _ in keys if scheme is not None}
        known = await schemes.published_keys(connection, self.tenant, named) if named else set()
        return {
            key: schemes.unpublished(key[1], self.tenant)
            if key[1] is not None and key[1] not in known
            else found
            for key, found in changes.items()
        }

    async def _explanations(
        self, connection: AsyncConnection, keys: list[tuple[int, str]]
    ) -> dict[tuple[int, str], Explanation | BaseException]:
        """Why each customer is in their tier of a scheme: one metric query per scheme for
        the whole batch (a population scheme ranks the whole tenant once, not per customer)."""
        published = {s.key: s for s in await schemes.current(connection, self.tenant)}
        now = dt.datetime.now(dt.UTC)
        found: dict[tuple[int, str], Explanation | BaseException] = {}
        for key in sorted({scheme for _, scheme in keys}):
            ids = sorted({customer for customer, scheme in keys if scheme == key})
            scheme = published.get(key)
            if scheme is None:
                found.update(((c, key), schemes.unpublished(key, self.tenant)) for c in ids)
                continue
            values = await metric_values(
                connection,
                self.tenant,
                scheme.checked.refs,
                ids,
                population=scheme.uses_population,
                as_of=now,
            )
            kept = await kept_members(connection, self.tenant, scheme.checked, ids)
            found.update(
                ((c, key), explain(scheme.checked, values[c], kept.get(c), now)) for c in ids
            )
        return found
