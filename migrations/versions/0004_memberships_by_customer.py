"""Memberships by customer: a customer's tiers in every scheme without scanning the tenant's.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_memberships_tenant_id_customer_id", "memberships", ["tenant_id", "customer_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_memberships_tenant_id_customer_id", table_name="memberships")
