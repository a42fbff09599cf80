"""`tierwise_analyze` may ANALYZE the prediction tables too: a fit rewrites every customer's
predictions, and the runs that join them are planned right after, before autovacuum.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# 0003's tenant tables (the function's list until now), then 0006's prediction tables.
_BEFORE = (
    "customers",
    "orders",
    "events",
    "customer_metrics",
    "schemes",
    "scheme_versions",
    "evaluation_runs",
    "memberships",
    "transitions",
    "strategies",
    "api_keys",
    "audit_log",
    "webhooks",
    "webhook_deliveries",
)
_AFTER = (*_BEFORE, "prediction_models", "customer_predictions")


def _analyze_function(tables: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{table}'" for table in tables)
    # CREATE OR REPLACE keeps the owner and the grants of 0003.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION tierwise_analyze(table_name text) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
            IF table_name NOT IN ({listed}) THEN
                RAISE EXCEPTION 'tierwise_analyze: % is not a tenant table', table_name;
            END IF;
            EXECUTE format('ANALYZE %I', table_name);
        END $$
        """
    )


def upgrade() -> None:
    _analyze_function(_AFTER)


def downgrade() -> None:
    _analyze_function(_BEFORE)
