"""Tenant isolation enforced by Postgres: row-level security for the app role, which every
tenant's transaction switches to, confines raw SQL to the tenant's rows, whatever it filters."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.database import APP_ROLE, TENANT_SETTING, analyze, tenant_transaction
from service.db.tables import metadata, tenants
from service.engine import evaluation, schemes, strategies
from tests.api.support import shop
from tests.support import VALUE

TENANT_TABLES = sorted(name for name, table in metadata.tables.items() if "tenant_id" in table.c)


async def _two_shops(engine: AsyncEngine, tenant: str) -> str:
    """``tenant`` and a second tenant, each with the test shop, a webhook and an audit entry."""
    other = f"{tenant}_b"
    async with engine.begin() as connection:
        await connection.execute(tenants.insert().values(id=other, name=other))
    for each in (tenant, other):
        await shop(engine, each)
        event = {"customer_id": "ann", "type": "login", "occurred_at": "2026-05-02"}
        await import_rows(engine, Kind.events, each, enumerate([event]), source="test")
        async with tenant_transaction(engine, each) as connection:
            await audit.record(
                connection, each, audit.Actor("tester", "admin", "test"), "test", each
            )
            await connection.execute(
                text(
                    "INSERT INTO webhooks (tenant_id, url, secret, created_by) "
                    "VALUES (:t, 'https://example.com/hook', 's', 'tester')"
                ),
                {"t": each},
            )
            await connection.execute(
                text(
                    "INSERT INTO api_keys (tenant_id, id, role, secret_hash, created_by) "
                    "VALUES (:t, 'k1', 'viewer', 'h', 'tester')"
                ),
                {"t": each},
            )
            await connection.execute(
                text(
                    "INSERT INTO exchange_rates (tenant_id, currency, valid_from, rate) "
                    "VALUES (:t, 'USD', '2026-01-01', 0.9)"
                ),
                {"t": each},
            )
            # A member kept without qualifying, as a `keep` tier's evaluation records one.
            await connection.execute(
                text(
                    "INSERT INTO tier_holds (tenant_id, scheme_key, customer_id, tier, "
                    "qualified_at, held_from) SELECT :t, 'value', id, 'VIP', now(), now() "
                    "FROM customers WHERE external_id = 'ann'"
                ),
                {"t": each},
            )
            # The shop is too small to fit models on: a stored model and prediction by hand.
            await connection.execute(
                text(
                    "INSERT INTO prediction_models (tenant_id, version, as_of, r, alpha, a, b, "
                    "p, q, v, customers, repeat_customers, log_likelihood, "
                    "gamma_gamma_customers, gamma_gamma_log_likelihood, horizon_days, "
                    "yearly_discount_rate) VALUES (:t, 1, now(), 0.2, 30, 0.8, 2.5, 6, 3.7, 15, "
                    "3, 1, -10, 1, -5, '{365}', 0)"
                ),
                {"t": each},
            )
            await connection.execute(
                text(
                    "INSERT INTO customer_predictions (tenant_id, customer_id, model_version, "
                    "as_of, repeat_purchases, purchase_span_days, observed_days, p_alive, "
                    "expected_orders) SELECT :t, id, 1, now(), 0, 0, 10, 1, '{0.5}' "
                    "FROM customers WHERE external_id = 'ann'"
                ),
                {"t": each},
            )
    return other


async def test_the_app_role_cannot_bypass_row_level_security(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        role = (
            await connection.execute(
                text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"),
                {"r": APP_ROLE},
            )
        ).one()
        owned = await connection.scalar(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = :r"),
            {"r": APP_ROLE},
        )
    assert (role.rolsuper, role.rolbypassrls, owned) == (False, False, 0)


async def test_every_tenant_table_has_row_level_security(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        protected = {
            row.relname
            for row in await connection.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid "
                    "WHERE c.relrowsecurity AND p.polname = 'tenant_isolation'"
                )
            )
        }
    assert set(TENANT_TABLES) | {"tenants"} <= protected


@pytest.mark.parametrize("table", TENANT_TABLES)
async def test_unfiltered_sql_sees_only_the_tenants_rows(
    engine: AsyncEngine, tenant: str, table: str
) -> None:
    other = await _two_shops(engine, tenant)
    async with engine.connect() as connection:
        everywhere = dict(
            (
                await connection.execute(
                    text(f"SELECT tenant_id, count(*) FROM {table} GROUP BY tenant_id")
                )
            ).all()
        )
    assert everywhere.get(tenant, 0) > 0 or table == "webhook_deliveries"
    async with tenant_transaction(engine, tenant) as connection:
        seen = dict(
            (
                await connection.execute(
                    text(f"SELECT tenant_id, count(*) FROM {table} GROUP BY tenant_id")
                )
            ).all()
        )
    assert other not in seen
    assert seen.get(tenant, 0) == everywhere.get(tenant, 0)


async def test_writing_another_tenants_rows_is_refused(engine: AsyncEngine, tenant: str) -> None:
    other = await _two_shops(engine, tenant)
    with pytest.raises(DBAPIError, match="row-level security"):
        async with tenant_transaction(engine, tenant) as connection:
            await connection.execute(
                text("INSERT INTO customers (tenant_id, external_id) VALUES (:t, 'intruder')"),
                {"t": other},
            )
    async with tenant_transaction(engine, tenant) as connection:
        # Updates and deletes of the other tenant's rows find nothing to change.
        updated = await connection.execute(
            text("UPDATE customers SET name = 'x' WHERE tenant_id = :t"), {"t": other}
        )
        deleted = await connection.execute(
            text("DELETE FROM strategies WHERE tenant_id = :t"), {"t": other}
        )
    assert (updated.rowcount, deleted.rowcount) == (0, 0)


async def test_without_a_tenant_the_app_role_sees_nothing(engine: AsyncEngine, tenant: str) -> None:
    await _two_shops(engine, tenant)
    async with engine.begin() as connection:
        await connection.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
        assert await connection.scalar(text("SELECT count(*) FROM customers")) == 0


async def test_the_tenant_ends_with_the_transaction(engine: AsyncEngine, tenant: str) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        inside = (
            await connection.execute(
                text(f"SELECT current_user, current_setting('{TENANT_SETTING}')")
            )
        ).one()
    async with engine.connect() as connection:
        after = (
            await connection.execute(
                text(f"SELECT current_user, current_setting('{TENANT_SETTING}', true)")
            )
        ).one()
    assert tuple(inside) == (APP_ROLE, tenant)
    assert after[0] != APP_ROLE and not after[1]


async def test_the_audit_log_cannot_be_changed(engine: AsyncEngine, tenant: str) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        await audit.record(connection, tenant, audit.Actor("a", "admin", "test"), "test", "x")
    for statement in ("UPDATE audit_log SET actor = 'b'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with tenant_transaction(engine, tenant) as connection:
                await connection.execute(text(statement))
        # Not even the owner: the trigger refuses.
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))


async def test_analyze_is_lent_for_tenant_tables_only(engine: AsyncEngine, tenant: str) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        await analyze(connection, "memberships")
    with pytest.raises(DBAPIError, match="not a tenant table"):
        async with tenant_transaction(engine, tenant) as connection:
            await analyze(connection, "alembic_version")


async def test_engine_work_runs_under_row_level_security(engine: AsyncEngine, tenant: str) -> None:
    """Publishing, evaluating and strategies work as the app role, for their tenant only."""
    other = await _two_shops(engine, tenant)
    async with tenant_transaction(engine, tenant) as connection:
        await schemes.publish(connection, tenant, VALUE.replace("VIP", "Gold"))
    [run] = await evaluation.evaluate_all(engine, tenant)
    async with engine.connect() as connection:
        tiers = dict(
            (
                await connection.execute(
                    text(
                        "SELECT tenant_id, array_agg(DISTINCT tier ORDER BY tier) FROM memberships "
                        "GROUP BY tenant_id"
                    )
                )
            ).all()
        )
    assert run.customers == 3
    assert "Gold" in tiers[tenant] and "Gold" not in tiers[other]
    async with tenant_transaction(engine, tenant) as connection:
        assert {s.tier for s in await strategies.listed(connection, tenant)} >= {"VIP"}
        # Naming the other tenant in a call still yields nothing of theirs.
        assert await strategies.listed(connection, other) == []
