"""Transition numbers per tenant and scheme: what clients see instead of the global id.

`transitions.id` comes from one sequence shared by every tenant, so the gaps between the ids
one tenant was shown measured the other tenants' volume. Each transition now also has a
`number`, counted per tenant and scheme in `transition_counters` (existing ones numbered in id
order); the API's `Transition.id` and the webhooks' event id are made of it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APP_ROLE = "tierwise_app"
TENANT_SETTING = "tierwise.tenant"


def upgrade() -> None:
    op.create_table(
        "transition_counters",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("scheme_key", sa.Text(collation="C"), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "scheme_key", name="pk_transition_counters"),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON transition_counters TO {APP_ROLE}")
    op.execute("ALTER TABLE transition_counters ENABLE ROW LEVEL SECURITY")
    tenant = f"current_setting('{TENANT_SETTING}', true)"
    op.execute(
        f"CREATE POLICY tenant_isolation ON transition_counters TO {APP_ROLE} "
        f"USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})"
    )
    op.add_column("transitions", sa.Column("number", sa.BigInteger(), nullable=True))
    op.execute(
        """
        UPDATE transitions t SET number = n.number
        FROM (
            SELECT tenant_id, id,
                   row_number() OVER (PARTITION BY tenant_id, scheme_key ORDER BY id) AS number
            FROM transitions
        ) n
        WHERE t.tenant_id = n.tenant_id AND t.id = n.id
        """
    )
    op.execute(
        """
        INSERT INTO transition_counters (tenant_id, scheme_key, last_number)
        SELECT tenant_id, scheme_key, max(number) FROM transitions GROUP BY tenant_id, scheme_key
        """
    )
    op.alter_column("transitions", "number", nullable=False)


def downgrade() -> None:
    op.drop_column("transitions", "number")
    op.execute("DROP POLICY IF EXISTS tenant_isolation ON transition_counters")
    op.drop_table("transition_counters")
