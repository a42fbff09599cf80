"""The per-customer order rollup (`customer_metrics`): kept current by ingest for the customers
a load touched, rebuildable from the raw orders, and checkable against them."""

from __future__ import annotations

from sqlalchemy import Boolean, column, func, literal_column, select, table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl.catalog import classified_orders
from service.db.tables import orders

# Customers a load touched; ingest fills it. Those whose existing orders changed or moved are
# marked `recompute`: refresh_affected recomputes them from their orders.
CREATE_AFFECTED = (
    "CREATE TEMP TABLE IF NOT EXISTS affected_customers"
    " (customer_id bigint, recompute boolean) ON COMMIT DROP"
)
# The same table kept by the connection and emptied at each commit (ingest's loads, which run
# as the tenants' role: made by another role, the table would be that role's).
CREATE_AFFECTED_KEPT = CREATE_AFFECTED.replace("ON COMMIT DROP", "ON COMMIT DELETE ROWS")


# A new order that is a plain sale (not cancelled, not a refund) and that no stored refund names
# only adds to its customer's rollup; anything else marks the customer for recomputation.
PLAIN_SALE = "status <> 'cancelled' AND amount >= 0 AND refund_of IS NULL"

# The upserts insert the time and keep EXCLUDED.updated_at: Citus allows only immutable
# functions in DO UPDATE SET.


def inserted_per_customer(inserted: str) -> str:
    """A query over newly inserted orders (the CTE named by ``inserted``, with customer_id,
    amount, ordered_at and ``plain``: a sale no refund names), one row per customer: what
    its rollup grows by, and whether all its new orders are plain. Aggregated once, for
    `add_inserted` and for marking the customers touched."""
    return f"""
    SELECT customer_id, count(*) AS order_count, sum(amount) AS order_total,
           min(ordered_at) AS first_order_at, max(ordered_at) AS last_order_at,
           bool_and(plain) AS plain
    FROM {inserted} GROUP BY customer_id
    """


def add_inserted(per_customer: str) -> str:
    """A data-modifying CTE body that adds newly inserted orders (``per_customer``: the CTE
    of `inserted_per_customer`) to the rollups of the customers all of whose new orders are
    plain: cheaper than recomputing customers whose orders only grew. `touched` marks the
    others for recomputation (`refresh_affected`)."""
    return f"""
    INSERT INTO customer_metrics AS m
        (tenant_id, customer_id, order_count, order_total, first_order_at, last_order_at,
         updated_at)
    SELECT :t, customer_id, order_count, order_total, first_order_at, last_order_at, now()
    FROM {per_customer} WHERE plain
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
        order_count = m.order_count + EXCLUDED.order_count,
        order_total = m.order_total + EXCLUDED.order_total,
        first_order_at = least(m.first_order_at, EXCLUDED.first_order_at),
        last_order_at = greatest(m.last_order_at, EXCLUDED.last_order_at),
        updated_at = EXCLUDED.updated_at
    """


# The orders' columns a rollup reads, as RETURNING gives them back (`rebuild_from`).
ROLLUP_COLUMNS = ("customer_id", "external_id", "amount", "ordered_at", "status", "refund_of")


def _aggregate(only_affected: bool, source: str | None = None) -> str:
    """Per customer of the tenant ``:t`` (or only those marked ``recompute``; or of the rows
    of the CTE named ``source``, with `ROLLUP_COLUMNS`): purchases, net amount and purchase
    times, from the catalog's one definition of a purchase, as SQL text."""
    # `:t` is left for text() to bind; the catalog's own values are rendered as literals.
    rows = select(orders).where(orders.c.tenant_id == literal_column(":t"))
    if source is not None:
        given = table(source, *(column(name, orders.c[name].type) for name in ROLLUP_COLUMNS))
        rows = select(given)
    if only_affected:
        rows = rows.where(
            orders.c.customer_id.in_(
                select(column("customer_id"))
                .select_from(table("affected_customers"))
                .where(column("recompute", Boolean))
            )
        )
    o = classified_orders(rows.subquery("tenant_orders"), None)
    statement = select(
        o.c.customer_id,
        func.count().filter(o.c.purchase).label("order_count"),
        func.coalesce(func.sum(o.c.amount).filter(o.c.counted), 0).label("order_total"),
        func.min(o.c.ordered_at).filter(o.c.purchase).label("first_order_at"),
        func.max(o.c.ordered_at).filter(o.c.purchase).label("last_order_at"),
    ).group_by(o.c.customer_id)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


def aggregate_of(inserted: str) -> str:
    """SQL: the rollup of each customer of ``inserted`` (a CTE of orders with
    `ROLLUP_COLUMNS`) computed from those rows alone: right when they are all the tenant's
    orders (its first load). One pass over them, instead of adding the plain sales and then
    recomputing the other customers from the stored orders (`upsert_rolled` writes it)."""
    return _aggregate(False, inserted)


def upsert_rolled(rolled: str) -> str:
    """A data-modifying CTE body that writes the rollups of the CTE ``rolled`` (of
    `aggregate_of`)."""
    return _UPSERT.format(
        aggregate=f"SELECT customer_id, order_count, order_total, first_order_at, last_order_at"
        f" FROM {rolled}"
    )


_AGGREGATE_ALL = _aggregate(False)
_AGGREGATE_AFFECTED = _aggregate(True)
_ONLY_AFFECTED = "AND m.customer_id IN (SELECT customer_id FROM affected_customers WHERE recompute)"

_UPSERT = """
    INSERT INTO customer_metrics AS m
        (tenant_id, customer_id, order_count, order_total, first_order_at, last_order_at,
         updated_at)
    SELECT :t, a.customer_id, a.order_count, a.order_total, a.first_order_at, a.last_order_at,
           now()
    FROM ({aggregate}) a
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
        order_count = EXCLUDED.order_count, order_total = EXCLUDED.order_total,
        first_order_at = EXCLUDED.first_order_at, last_order_at = EXCLUDED.last_order_at,
        updated_at = EXCLUDED.updated_at
    WHERE (m.order_count, m.order_total, m.first_order_at, m.last_order_at) IS DISTINCT FROM
          (EXCLUDED.order_count, EXCLUDED.order_total, EXCLUDED.first_order_at,
           EXCLUDED.last_order_at)
"""

# Customers left without orders have no rollup row.
_DELETE_EMPTY = """
    DELETE FROM customer_metrics m
    WHERE m.tenant_id = :t {only}
      AND NOT EXISTS (SELECT 1 FROM orders o
                      WHERE o.tenant_id = :t AND o.customer_id = m.customer_id)
"""


async def refresh_affected(
    connection: AsyncConnection, tenant: str, *, orders_removed: bool = True
) -> None:
    """Recompute the rollups of the customers marked ``recompute`` from their orders;
    without ``orders_removed`` (a tenant's first load: each marked customer has the orders
    that marked it) no rollup is looked at for being left without orders.

    A load of only new orders marks none (their rollups grew by addition), and then this does
    nothing: planned without statistics for the temporary table, the empty-rollup cleanup
    below once scanned a big tenant's orders for every rollup row.
    """
    marked = await connection.execute(
        text("SELECT 1 FROM affected_customers WHERE recompute LIMIT 1")
    )
    if marked.first() is None:
        return
    await connection.execute(text("ANALYZE affected_customers"))
    await connection.execute(text(_UPSERT.format(aggregate=_AGGREGATE_AFFECTED)), {"t": tenant})
    if orders_removed:
        await connection.execute(
            text(_DELETE_EMPTY.format(only=_ONLY_AFFECTED)),
            {"t": tenant},
        )


async def rebuild(connection: AsyncConnection, tenant: str) -> None:
    """Recompute every customer's rollup of ``tenant`` from the raw orders."""
    await connection.execute(text(_UPSERT.format(aggregate=_AGGREGATE_ALL)), {"t": tenant})
    await connection.execute(text(_DELETE_EMPTY.format(only="")), {"t": tenant})


async def drift(connection: AsyncConnection, tenant: str) -> int:
    """How many customers' rollups differ from a from-scratch recomputation (0 when sound)."""
    result = await connection.execute(
        text(
            f"""
            SELECT count(*) FROM ({_AGGREGATE_ALL}) fresh
            FULL JOIN (SELECT * FROM customer_metrics WHERE tenant_id = :t) kept
              ON kept.customer_id = fresh.customer_id
            WHERE (fresh.order_count, fresh.order_total, fresh.first_order_at,
                   fresh.last_order_at)
                  IS DISTINCT FROM
                  (kept.order_count, kept.order_total, kept.first_order_at, kept.last_order_at)
            """
        ),
        {"t": tenant},
    )
    return int(result.scalar_one())
