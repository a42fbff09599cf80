"""A segment's members: the tenant's customers in a tier of a scheme and/or matching a
condition in the rule language (what the API's `customers` pages through), and their export
as CSV with chosen metric columns, streamed in keyset batches over the customers' ids so that
a tier of any size is exported without holding it in memory.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import Select, Subquery, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl import MetricRef, Value, check_condition, compile_condition, metric_values_select
from dsl.checked import IsNull, Ref
from dsl.evaluator import is_population
from dsl.parser import parse_condition
from service.db import exact
from service.db.database import tenant_transaction
from service.db.tables import customers, memberships
from service.engine import schemes
from service.engine.sources import tenant_sources
from service.errors import UserError

__all__ = [
    "EXPORT_BATCH",
    "MAX_WHERE_CHARS",
    "Export",
    "members_select",
    "prepare_export",
]

# A `where` is one condition: the rule files' 500,000 characters would be many seconds of
# parsing for nothing a person writes.
MAX_WHERE_CHARS = 10_000
# Customers per statement of an export: each batch is one short transaction.
EXPORT_BATCH = 5_000


async def members_select(
    connection: AsyncConnection,
    tenant: str,
    scheme: str | None,
    tier: str | None,
    where: str | None,
    as_of: dt.datetime | None = None,
) -> Select[Any]:
    """The tenant's customers' ids matching the filters (unordered, unpaged); ``where`` is
    evaluated at ``as_of`` (default: now). Raises `NotFound` for an unpublished scheme or
    tier, `RuleError` for a bad ``where``."""
    statement = select(customers.c.id).where(customers.c.tenant_id == tenant)
    if tier is not None and scheme is None:
        raise UserError("`tier` needs `scheme`: tier names belong to a scheme")
    published = await schemes.current(connection, tenant) if scheme or where else []
    if scheme is not None:
        found = schemes.named(published, scheme, tenant)
        if tier is not None:
            found.check_tier(tier)
        members = select(memberships.c.customer_id).where(
            memberships.c.tenant_id == tenant, memberships.c.scheme_key == scheme
        )
        if tier is not None:
            members = members.where(memberships.c.tier == tier)
        statement = statement.where(customers.c.id.in_(members))
    if where is not None:
        if len(where) > MAX_WHERE_CHARS:
            raise UserError(f"`where` is longer than {MAX_WHERE_CHARS:,} characters")
        tiers = {s.key: s.tiers for s in published}
        # Parsing, checking and compiling take milliseconds of CPU (more for ranked metrics):
        # in a thread, the event loop goes on serving the other requests.
        matching = await asyncio.to_thread(
            _matching, where, tiers, tenant, as_of or dt.datetime.now(dt.UTC)
        )
        statement = statement.where(customers.c.id.in_(select(matching.c.customer_id)))
    return statement


def _matching(
    where: str, tiers: dict[str, tuple[str, ...]], tenant: str, as_of: dt.datetime
) -> Subquery:
    """The customers for whom ``where`` holds at ``as_of``. Raises RuleError."""
    condition = check_condition(parse_condition(where, "<where>"), "<where>", tiers)
    return compile_condition(condition, tenant_sources(tenant), as_of).subquery("matching")


def metric_column(text: str) -> MetricRef:
    """A catalog metric as written in rules (`recency`, `monetary(90 days)`); `RuleError`
    (with where the mistake is) for anything else."""
    checked = check_condition(parse_condition(f"{text} is null", "<metric>"), "<metric>")
    if not isinstance(checked, IsNull) or not isinstance(checked.operand, Ref):
        raise UserError(f"`{text}` is not a metric")
    return checked.operand.ref


def _cell(value: Value) -> str:
    """A value as CSV text: exact decimals in the API's one form (service.db.exact: no exponent,
    no trailing zeros), ISO times, true/false, empty for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return exact.plain(value)
    if isinstance(value, dict | list):  # a raw JSON attribute: JSON, its numbers exact
        return exact.dumps(value)
    return str(value)


@dataclass(frozen=True)
class Export:
    """An export whose filters and metrics are checked (`prepare_export`): `lines` streams it."""

    engine: AsyncEngine
    tenant: str
    scheme: str | None
    tier: str | None
    where: str | None
    metrics: tuple[str, ...]
    refs: tuple[MetricRef, ...]
    as_of: dt.datetime
    batch: int = EXPORT_BATCH

    @property
    def header(self) -> list[str]:
        return ["customer_id", *self.metrics]

    async def rows(self) -> AsyncIterator[list[list[str]]]:
        """The members in the order of their ids, a batch (one transaction) at a time."""
        after: str | None = None
        population = any(is_population(ref) for ref in self.refs)
        while True:
            async with tenant_transaction(self.engine, self.tenant, batch=True) as connection:
                ids = await members_select(
                    connection, self.tenant, self.scheme, self.tier, self.where, self.as_of
                )
                page = ids.with_only_columns(customers.c.id, customers.c.external_id)
                if after is not None:
                    page = page.where(customers.c.external_id > after)
                found = (
                    await connection.execute(
                        page.order_by(customers.c.external_id).limit(self.batch)
                    )
                ).all()
                values = await self._values(connection, [row.id for row in found], population)
            if not found:
                return
            yield [
                [row.external_id, *(_cell(v) for v in values.get(row.id, (None,) * len(self.refs)))]
                for row in found
            ]
            if len(found) < self.batch:
                return
            after = found[-1].external_id

    async def _values(
        self, connection: AsyncConnection, ids: list[int], population: bool
    ) -> dict[int, tuple[Value, ...]]:
        if not self.refs or not ids:
            return {}
        # Ranked metrics compare a customer with the whole tenant: computed over everyone.
        sources = (
            tenant_sources(self.tenant)
            if population
            else tenant_sources(self.tenant, customer_ids=ids)
        )
        statement = metric_values_select(self.refs, sources, self.as_of)
        statement = statement.where(statement.selected_columns.customer_id.in_(ids))
        return {row[0]: tuple(row[1:]) for row in await connection.execute(statement)}

    async def lines(self) -> AsyncIterator[str]:
        """The CSV text (RFC 4180, CRLF line ends), the header first, a batch at a time."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.header)
        yield buffer.getvalue()
        async for batch in self.rows():
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(batch)
            yield buffer.getvalue()

    async def write(self, stream: TextIO) -> int:
        """Write the CSV to ``stream`` (opened with ``newline=""``); returns the customers."""
        writer = csv.writer(stream)
        writer.writerow(self.header)
        written = 0
        async for batch in self.rows():
            writer.writerows(batch)
            written += len(batch)
        return written


async def prepare_export(
    engine: AsyncEngine,
    tenant: str,
    *,
    scheme: str | None,
    tier: str | None,
    where: str | None,
    metrics: Sequence[str] = (),
) -> Export:
    """An export of the customers of ``tier`` of ``scheme`` (or of all placed in ``scheme``)
    and/or those matching ``where``, with ``metrics`` as columns, all evaluated as of now.
    Everything is checked here, before a line is written: raises `NotFound` for an unknown
    scheme or tier, `RuleError` for a bad ``where`` or metric, `UserError` otherwise."""
    if scheme is None and where is None:
        raise UserError("say what to export: a --scheme (and --tier), a --where, or both")
    refs = tuple(metric_column(text) for text in metrics)
    as_of = dt.datetime.now(dt.UTC)
    async with tenant_transaction(engine, tenant) as connection:
        await members_select(connection, tenant, scheme, tier, where, as_of)
    return Export(engine, tenant, scheme, tier, where, tuple(r.text for r in refs), refs, as_of)
