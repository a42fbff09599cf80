"""Erasure key: a per-tenant secret for the keyed digest of an erased customer's id.

The audit log keeps that a customer was erased without their id in clear: the target is
HMAC-SHA256 of the id under this key (service/engine/deletion.py), made on a tenant's first
erasure. No API returns it, so readers of the audit log cannot test guessed ids against it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("erasure_key", sa.LargeBinary()))


def downgrade() -> None:
    op.drop_column("tenants", "erasure_key")
