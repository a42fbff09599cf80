"""Predictions: the tenant's fitted BG/NBD and Gamma-Gamma models (versioned) and each
customer's predictions from the current one, under row-level security like every tenant table.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

APP_ROLE = "tierwise_app"
TENANT_SETTING = "tierwise.tenant"
TABLES = ("prediction_models", "customer_predictions")

_KEY = sa.Text(collation="C")
PARAMETERS = ("r", "alpha", "a", "b", "p", "q", "v")


def upgrade() -> None:
    op.create_table(
        "prediction_models",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.Double(), nullable=False) for name in PARAMETERS),
        sa.Column("customers", sa.BigInteger(), nullable=False),
        sa.Column("repeat_customers", sa.BigInteger(), nullable=False),
        sa.Column("log_likelihood", sa.Double(), nullable=False),
        sa.Column("gamma_gamma_customers", sa.BigInteger(), nullable=False),
        sa.Column("gamma_gamma_log_likelihood", sa.Double(), nullable=False),
        sa.Column("horizon_days", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("yearly_discount_rate", sa.Numeric(), nullable=False),
        sa.Column(
            "fitted_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "version", name="pk_prediction_models"),
    )
    op.create_table(
        "customer_predictions",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("repeat_purchases", sa.BigInteger(), nullable=False),
        sa.Column("purchase_span_days", sa.Integer(), nullable=False),
        sa.Column("observed_days", sa.BigInteger(), nullable=False),
        sa.Column("mean_repeat_value", sa.Double()),
        sa.Column("p_alive", sa.Double(), nullable=False),
        sa.Column("expected_order_value", sa.Double()),
        sa.Column("expected_orders", postgresql.ARRAY(sa.Double()), nullable=False),
        sa.Column("clv", postgresql.ARRAY(sa.Double())),
        sa.PrimaryKeyConstraint("tenant_id", "customer_id", name="pk_customer_predictions"),
    )
    tenant = f"current_setting('{TENANT_SETTING}', true)"
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE} "
            f"USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
