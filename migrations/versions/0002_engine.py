"""Segmentation engine: schemes, versions, runs, memberships, transitions, strategies

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_runs",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scheme_key", sa.Text(collation="C"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("customers", sa.BigInteger(), nullable=True),
        sa.Column("changed", sa.BigInteger(), nullable=True),
        sa.Column("tiers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_evaluation_runs")),
    )
    op.create_index(
        op.f("ix_evaluation_runs_tenant_id_scheme_key_started_at"),
        "evaluation_runs",
        ["tenant_id", "scheme_key", "started_at"],
        unique=False,
    )
    op.create_table(
        "memberships",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("scheme_key", sa.Text(collation="C"), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "scheme_key", "customer_id", name=op.f("pk_memberships")
        ),
    )
    op.create_index(
        op.f("ix_memberships_tenant_id_scheme_key_tier_customer_id"),
        "memberships",
        ["tenant_id", "scheme_key", "tier", "customer_id"],
        unique=False,
    )
    op.create_table(
        "scheme_versions",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("scheme_key", sa.Text(collation="C"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("tiers", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "depends_on",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("uses_population", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "scheme_key", "version", name=op.f("pk_scheme_versions")
        ),
    )
    op.create_table(
        "schemes",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("key", sa.Text(collation="C"), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_schemes")),
    )
    op.create_table(
        "strategies",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scheme_key", sa.Text(collation="C"), nullable=False),
        sa.Column("tier", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("100"), nullable=False),
        sa.Column(
            "parameters",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_strategies")),
        sa.UniqueConstraint(
            "tenant_id",
            "scheme_key",
            "tier",
            "name",
            name=op.f("uq_strategies_tenant_id_scheme_key_tier_name"),
        ),
    )
    op.create_table(
        "transitions",
        sa.Column("tenant_id", sa.Text(collation="C"), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("scheme_key", sa.Text(collation="C"), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("from_tier", sa.Text(), nullable=True),
        sa.Column("to_tier", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_transitions")),
    )
    op.create_index(
        op.f("ix_transitions_tenant_id_customer_id_scheme_key_id"),
        "transitions",
        ["tenant_id", "customer_id", "scheme_key", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_transitions_tenant_id_scheme_key_id"),
        "transitions",
        ["tenant_id", "scheme_key", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_transitions_tenant_id_scheme_key_id"), table_name="transitions")
    op.drop_index(
        op.f("ix_transitions_tenant_id_customer_id_scheme_key_id"), table_name="transitions"
    )
    op.drop_table("transitions")
    op.drop_table("strategies")
    op.drop_table("schemes")
    op.drop_table("scheme_versions")
    op.drop_index(
        op.f("ix_memberships_tenant_id_scheme_key_tier_customer_id"), table_name="memberships"
    )
    op.drop_table("memberships")
    op.drop_index(
        op.f("ix_evaluation_runs_tenant_id_scheme_key_started_at"), table_name="evaluation_runs"
    )
    op.drop_table("evaluation_runs")
