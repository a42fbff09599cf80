"""Orders get a status (`completed` or `cancelled`) and refunds a link to the order they refund
(`refund_of`); the rollups are recomputed as the metrics now define them: purchases counted,
amounts net of refunds, cancelled orders left out (dsl/catalog.py, docs/rules.md).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("status", sa.Text, nullable=False, server_default="completed")
    )
    op.add_column("orders", sa.Column("refund_of", sa.Text(collation="C")))
    op.create_check_constraint(
        op.f("ck_orders_status"), "orders", "status IN ('completed', 'cancelled')"
    )
    op.create_check_constraint(
        op.f("ck_orders_refund_amount"), "orders", "refund_of IS NULL OR amount <= 0"
    )
    # Negative rows already stored are refunds now: every tenant's rollups follow. Only rows
    # that differ change (the definition, as of this revision, of service/data/rollups.py).
    op.execute(
        """
        WITH fresh AS (
            SELECT tenant_id, customer_id,
                   count(*) FILTER (WHERE amount >= 0) AS order_count,
                   sum(amount) AS order_total,
                   min(ordered_at) FILTER (WHERE amount >= 0) AS first_order_at,
                   max(ordered_at) FILTER (WHERE amount >= 0) AS last_order_at
            FROM orders GROUP BY tenant_id, customer_id
        )
        UPDATE customer_metrics m
        SET order_count = f.order_count, order_total = f.order_total,
            first_order_at = f.first_order_at, last_order_at = f.last_order_at,
            updated_at = now()
        FROM fresh f
        WHERE m.tenant_id = f.tenant_id AND m.customer_id = f.customer_id
          AND (m.order_count, m.order_total, m.first_order_at, m.last_order_at)
              IS DISTINCT FROM
              (f.order_count, f.order_total, f.first_order_at, f.last_order_at)
        """
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_orders_refund_amount"), "orders", type_="check")
    op.drop_constraint(op.f("ck_orders_status"), "orders", type_="check")
    op.drop_column("orders", "refund_of")
    op.drop_column("orders", "status")
    op.execute(
        """
        WITH fresh AS (
            SELECT tenant_id, customer_id, count(*) AS order_count, sum(amount) AS order_total,
                   min(ordered_at) AS first_order_at, max(ordered_at) AS last_order_at
            FROM orders GROUP BY tenant_id, customer_id
        )
        UPDATE customer_metrics m
        SET order_count = f.order_count, order_total = f.order_total,
            first_order_at = f.first_order_at, last_order_at = f.last_order_at
        FROM fresh f
        WHERE m.tenant_id = f.tenant_id AND m.customer_id = f.customer_id
        """
    )
