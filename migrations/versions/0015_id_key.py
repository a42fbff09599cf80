"""The deployment's id key: ``deployment_keys``, with a random 32-byte ``ids`` key that the ids
of strategies, webhooks, deliveries, runs and audit entries are encrypted with before users see
them (service/db/ids.py), made once here so every process of the deployment agrees.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

APP_ROLE = "tierwise_app"


def upgrade() -> None:
    table = op.create_table(
        "deployment_keys",
        sa.Column("name", sa.Text(collation="C"), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deployment_keys")),
    )
    # Read by the service before any tenant is set; never written by it.
    op.execute(f"GRANT SELECT ON deployment_keys TO {APP_ROLE}")
    op.bulk_insert(table, [{"name": "ids", "key": secrets.token_bytes(32)}])


def downgrade() -> None:
    op.drop_table("deployment_keys")
