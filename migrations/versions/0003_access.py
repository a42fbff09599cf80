"""Access: API keys, the audit log, webhooks with their outbox, and row-level security.

Every tenant table gets a row-level security policy that admits only the rows of the tenant set
for the current transaction (``tierwise.tenant``) to the ``tierwise_app`` role. The service runs
every tenant's work as that role (``SET LOCAL ROLE``): it owns no table and cannot bypass
row-level security, so a missing ``WHERE tenant_id`` cannot leak another tenant's rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "tierwise_app"
TENANT_SETTING = "tierwise.tenant"

_NOW = sa.text("now()")
_KEY = sa.Text(collation="C")

# Every table with a tenant_id column, and `tenants` itself (keyed by id).
TENANT_TABLES = (
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


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW)


def _create_tables() -> None:
    op.create_table(
        "api_keys",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("id", _KEY, nullable=False),
        sa.Column("name", sa.Text(), nullable=False, server_default=""),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        _created_at(),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_api_keys"),
    )
    op.create_table(
        "audit_log",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("before", postgresql.JSONB()),
        sa.Column("after", postgresql.JSONB()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text()),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_id_at", "audit_log", ["tenant_id", "at"])
    op.create_table(
        "webhooks",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("scheme_key", _KEY),
        sa.Column("tier", sa.Text()),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        _created_at(),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_webhooks"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("tenant_id", _KEY, nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("webhook_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW
        ),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_status", sa.Integer()),
        _created_at(),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint(
            "tenant_id",
            "webhook_id",
            "event_id",
            name="uq_webhook_deliveries_tenant_id_webhook_id_event_id",
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def _make_audit_log_append_only() -> None:
    op.execute(
        """
        CREATE FUNCTION tierwise_audit_log_is_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_is_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
        "ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION tierwise_audit_log_is_append_only()"
    )


def _create_app_role() -> None:
    # Roles belong to the cluster: several databases (or test runs) share this one.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            END IF;
        END $$
        """
    )
    # The login role switches to the app role per transaction, so it must be a member.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
                EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO {APP_ROLE}")
    for table in TENANT_TABLES:
        if table != "audit_log":
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON audit_log TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")


def _create_analyze_function() -> None:
    # Fresh statistics right after a big change matter for the next plan (autovacuum may be off
    # or late), but only a table's owner may ANALYZE it before Postgres 17's MAINTAIN: this
    # function lends the app role exactly that, for the tenant tables and nothing else.
    tables = ", ".join(f"'{table}'" for table in TENANT_TABLES)
    op.execute(
        f"""
        CREATE FUNCTION tierwise_analyze(table_name text) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
            IF table_name NOT IN ({tables}) THEN
                RAISE EXCEPTION 'tierwise_analyze: % is not a tenant table', table_name;
            END IF;
            EXECUTE format('ANALYZE %I', table_name);
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION tierwise_analyze(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION tierwise_analyze(text) TO {APP_ROLE}")


def _enable_row_security() -> None:
    tenant = f"current_setting('{TENANT_SETTING}', true)"
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON tenants TO {APP_ROLE} "
        f"USING (id = {tenant}) WITH CHECK (id = {tenant})"
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE} "
            f"USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant})"
        )


def upgrade() -> None:
    _create_tables()
    _make_audit_log_append_only()
    _create_app_role()
    _create_analyze_function()
    _enable_row_security()


def downgrade() -> None:
    for table in ("tenants", *TENANT_TABLES):
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
    op.execute("DROP FUNCTION tierwise_analyze(text)")
    op.drop_index("ix_webhook_deliveries_pending", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.execute("DROP TRIGGER audit_log_is_append_only ON audit_log")
    op.execute("DROP FUNCTION tierwise_audit_log_is_append_only()")
    op.drop_index("ix_audit_log_tenant_id_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
