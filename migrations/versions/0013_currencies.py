"""Currencies: a tenant's reporting currency (`tenants.currency`), its exchange rates
(`exchange_rates`) and each order's original amount (`orders.original_amount`, with
`orders.currency`); `orders.amount` is in the reporting currency (service/data/rates.py).

A tenant that already has orders takes as its reporting currency the one most of its orders
name (the demo's CNY), else EUR; stored orders keep their amounts, with `original_amount` the
same and `currency` the tenant's when they named none. Orders of a tenant stored in another
currency were summed unconverted before; imported again after their rates, they are converted.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

APP_ROLE = "tierwise_app"
TENANT_SETTING = "tierwise.tenant"


def upgrade() -> None:
    op.add_column("tenants", sa.Column("currency", sa.Text, nullable=False, server_default="EUR"))
    op.execute(
        """
        UPDATE tenants t SET currency = c.currency
        FROM (
            SELECT DISTINCT ON (tenant_id) tenant_id, upper(btrim(currency)) AS currency
            FROM orders WHERE btrim(currency) ~ '^[A-Za-z]{3}$'
            GROUP BY tenant_id, upper(btrim(currency))
            ORDER BY tenant_id, count(*) DESC, upper(btrim(currency))
        ) c
        WHERE c.tenant_id = t.id
        """
    )
    op.create_table(
        "exchange_rates",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("currency", sa.Text(collation="C"), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("rate", sa.Numeric, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "currency", "valid_from", name=op.f("pk_exchange_rates")
        ),
        sa.CheckConstraint("rate > 0", name=op.f("ck_exchange_rates_rate_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_exchange_rates_tenant_id_tenants")
        ),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON exchange_rates TO {APP_ROLE}")
    op.execute("ALTER TABLE exchange_rates ENABLE ROW LEVEL SECURITY")
    tenant = f"current_setting('{TENANT_SETTING}', true)"
    op.execute(
        f"CREATE POLICY tenant_isolation ON exchange_rates TO {APP_ROLE} "
        f"USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})"
    )
    op.add_column("orders", sa.Column("original_amount", sa.Numeric(18, 4)))
    op.execute(
        """
        UPDATE orders o SET original_amount = o.amount,
               currency = coalesce(nullif(upper(btrim(o.currency)), ''), t.currency)
        FROM tenants t WHERE t.id = o.tenant_id
        """
    )


def downgrade() -> None:
    op.drop_column("orders", "original_amount")
    op.drop_table("exchange_rates")
    op.drop_column("tenants", "currency")
