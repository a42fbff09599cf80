"""`tierwise keys` as a user runs it, and the demo's development token."""

from __future__ import annotations

import getpass
import json

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.access.auth import AuthError, JwtVerifier, KeyVerifier, Role
from service.cli.keys import demo_access
from service.config import Settings
from service.db.database import tenant_transaction
from tests.support import tierwise


async def test_create_list_revoke(database: URL, engine: AsyncEngine, tenant: str) -> None:
    created = tierwise(
        database, "keys", "create", "--tenant", tenant, "--role", "ingest", "--name", "erp"
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.split()[-1]
    assert key.startswith(f"tw_{tenant}_")
    verifier = KeyVerifier(engine, cache_seconds=0)
    found = await verifier.verify(key)
    assert (found.tenant, found.role) == (tenant, Role.ingest)
    key_id = found.subject.removeprefix("key:")

    listed = tierwise(database, "keys", "list", "--tenant", tenant, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["name"], row["role"], row["revoked_at"]) == (
        key_id,
        "erp",
        "ingest",
        None,
    )
    assert key.rsplit("_", 1)[1] not in listed.stdout
    text = tierwise(database, "keys", "list", "--tenant", tenant)
    assert key_id in text.stdout and "erp" in text.stdout

    revoked = tierwise(database, "keys", "revoke", "--tenant", tenant, key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert f"API key {key_id} of tenant {tenant!r} revoked" in revoked.stdout
    with pytest.raises(AuthError, match="unknown or revoked"):
        await verifier.verify(key)

    async with tenant_transaction(engine, tenant) as connection:
        entries = await audit.entries(connection, tenant)
    assert [(e.action, e.actor, e.source) for e in entries] == [
        ("key.revoke", f"cli:{getpass.getuser()}", "cli"),
        ("key.create", f"cli:{getpass.getuser()}", "cli"),
    ]


def test_revoking_an_unknown_key_is_an_error(database: URL, tenant: str) -> None:
    result = tierwise(database, "keys", "revoke", "--tenant", tenant, "0123456789abcdef")
    assert result.returncode == 1
    assert f"no API key '0123456789abcdef' in tenant {tenant!r}" in result.stderr


def test_an_unknown_role_is_refused(database: URL, tenant: str) -> None:
    result = tierwise(database, "keys", "create", "--tenant", tenant, "--role", "owner")
    assert result.returncode == 2
    assert "owner" in result.stderr and "Traceback" not in result.stderr


def test_the_demo_prints_a_token_its_server_accepts() -> None:
    config, lines = demo_access(Settings(default_tenant="default"))
    assert lines[1].startswith("export TOKEN=")
    token = lines[1].removeprefix("export TOKEN=")
    found = JwtVerifier(config).verify(token)
    assert (found.tenant, found.role) == ("default", Role.admin)
    # The console link signs in with the token; the curl line uses the exported variable.
    assert lines[2] == f"console: http://127.0.0.1:8000/console#token={token}"
    assert "Authorization" in lines[3] and token in lines[3]
    assert '"Authorization: Bearer $TOKEN"' in lines[4]
    # A configured secret is used as it is.
    secret = "a-configured-secret-of-at-least-32-bytes"
    configured, lines = demo_access(Settings(jwt_secret=secret))
    assert configured.jwt_secret is not None
    assert configured.jwt_secret.get_secret_value() == secret
    assert JwtVerifier(configured).verify(lines[1].removeprefix("export TOKEN=")).role == Role.admin
