"""Tiers that keep their customers (`keep 90 days`): `memberships.qualified_at`, the last
evaluation at which the member's tier condition held, and `tier_holds`, the history of the
times a member was kept without qualifying (from `held_from`, with their last qualification
`qualified_at`, until `ended_at`), which a backtest reads to know who was kept as of its time.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

APP_ROLE = "tierwise_app"
TENANT_SETTING = "tierwise.tenant"


def upgrade() -> None:
    op.add_column("memberships", sa.Column("qualified_at", sa.DateTime(timezone=True)))
    # Members so far entered by qualifying, and were last placed at `since`.
    op.execute("UPDATE memberships SET qualified_at = since")
    op.create_table(
        "tier_holds",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("scheme_key", sa.Text(collation="C"), nullable=False),
        sa.Column("customer_id", sa.BigInteger, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("qualified_at", sa.DateTime(timezone=True)),
        sa.Column("held_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint(
            "tenant_id", "scheme_key", "customer_id", "held_from", name=op.f("pk_tier_holds")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tier_holds_tenant_id_tenants")
        ),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON tier_holds TO {APP_ROLE}")
    op.execute("ALTER TABLE tier_holds ENABLE ROW LEVEL SECURITY")
    tenant = f"current_setting('{TENANT_SETTING}', true)"
    op.execute(
        f"CREATE POLICY tenant_isolation ON tier_holds TO {APP_ROLE} "
        f"USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})"
    )


def downgrade() -> None:
    op.drop_table("tier_holds")
    op.drop_column("memberships", "qualified_at")
