"""Tenants, customers, orders, events and the per-customer order rollup.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_NOW = sa.text("now()")
_KEY = sa.Text(collation="C")
_EMPTY_JSON = sa.text("'{}'::jsonb")


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", _KEY, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "customers",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("external_id", _KEY, nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("email", sa.Text()),
        sa.Column("phone", sa.Text()),
        sa.Column("age", sa.Integer()),
        sa.Column("gender", sa.Text()),
        sa.Column("occupation", sa.Text()),
        sa.Column("region", sa.Text()),
        sa.Column("industry", sa.Text()),
        sa.Column("company_size", sa.Integer()),
        sa.Column("registered_at", sa.DateTime(timezone=True)),
        sa.Column("attributes", postgresql.JSONB(), nullable=False, server_default=_EMPTY_JSON),
        _created_at(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_customers"),
        sa.UniqueConstraint("tenant_id", "external_id", name="uq_customers_tenant_id_external_id"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_customers_tenant_id_tenants"
        ),
    )
    op.create_table(
        "orders",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("external_id", _KEY, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(18, 4), nullable=False),
        sa.Column("currency", sa.Text()),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("category", sa.Text()),
        sa.Column("channel", sa.Text()),
        _created_at(),
        sa.PrimaryKeyConstraint("tenant_id", "external_id", name="pk_orders"),
    )
    op.create_index(
        "ix_orders_tenant_id_customer_id_ordered_at",
        "orders",
        ["tenant_id", "customer_id", "ordered_at"],
    )
    op.create_table(
        "events",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("external_id", _KEY, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("type", _KEY, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric()),
        sa.Column("properties", postgresql.JSONB(), nullable=False, server_default=_EMPTY_JSON),
        _created_at(),
        sa.PrimaryKeyConstraint("tenant_id", "external_id", name="pk_events"),
    )
    op.create_index(
        "ix_events_tenant_id_customer_id_type_occurred_at",
        "events",
        ["tenant_id", "customer_id", "type", "occurred_at"],
    )
    op.create_table(
        "customer_metrics",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("order_count", sa.BigInteger(), nullable=False),
        sa.Column("order_total", sa.Numeric(), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True)),
        sa.Column("last_order_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", name="pk_customer_metrics"),
    )


def downgrade() -> None:
    op.drop_table("customer_metrics")
    op.drop_index("ix_events_tenant_id_customer_id_type_occurred_at", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_orders_tenant_id_customer_id_ordered_at", table_name="orders")
    op.drop_table("orders")
    op.drop_table("customers")
    op.drop_table("tenants")
