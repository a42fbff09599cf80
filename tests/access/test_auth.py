"""Bearer tokens: JWTs (HS256, RS256, ES256) and API keys, verified into principals."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access import audit
from service.access.audit import Actor
from service.access.auth import (
    LEEWAY,
    ROLE_PERMISSIONS,
    Authenticator,
    AuthError,
    JwtVerifier,
    KeyVerifier,
    Permission,
    Role,
    bearer_token,
    create_key,
    issue_token,
    list_keys,
    revoke_key,
    role_table_markdown,
)
from service.access.ratelimit import RateLimited, RateLimiter
from service.config import Settings
from service.db.database import tenant_transaction
from service.db.tables import api_keys
from service.errors import UserError

SECRET = "test-secret-that-is-long-enough-for-hs256"
ADMIN = Actor("test:admin", "admin", "test")


def _now() -> dt.datetime:
    """Read when a token is made: a time taken at import expired the tokens of a slow run."""
    return dt.datetime.now(dt.UTC)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "user-1",
        "tenant": "acme",
        "role": "analyst",
        "exp": _now() + dt.timedelta(minutes=5),
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthError) as raised:
        verifier.verify(token)
    return raised.value.message


def test_hs256_token_gives_tenant_role_and_subject() -> None:
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    found = verifier.verify(jwt.encode(_claims(), SECRET, algorithm="HS256"), source="10.0.0.1")
    assert (found.tenant, found.role, found.subject) == ("acme", Role.analyst, "user-1")
    assert found.actor == Actor("user-1", "analyst", "10.0.0.1")
    assert found.may(Permission.publish_rules) and not found.may(Permission.manage_keys)


def test_issue_token_round_trips() -> None:
    token = issue_token(SECRET, "acme", Role.admin, "dev")
    found = JwtVerifier(Settings(jwt_secret=SECRET)).verify(token)
    assert (found.tenant, found.role, found.subject) == ("acme", Role.admin, "dev")


def test_rs256_and_es256_tokens_verify_against_configured_public_keys(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    # Both keys in one setting (a gateway rotating keys, or two issuers).
    pems = _pem(rsa_key) + _pem(ec_key)
    verifier = JwtVerifier(Settings(jwt_public_keys=pems))
    assert verifier.verify(jwt.encode(_claims(), rsa_key, algorithm="RS256")).tenant == "acme"
    assert verifier.verify(jwt.encode(_claims(), ec_key, algorithm="ES256")).tenant == "acme"
    # ... or in a file.
    path = tmp_path / "keys.pem"
    path.write_text(pems)
    from_file = JwtVerifier(Settings(jwt_public_keys=str(path)))
    assert from_file.verify(jwt.encode(_claims(), ec_key, algorithm="ES256")).role == Role.analyst


def test_expired_token_is_refused() -> None:
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    expired = jwt.encode(_claims(exp=_now() - dt.timedelta(minutes=5)), SECRET, algorithm="HS256")
    assert _refused(verifier, expired) == "the token has expired"


def test_a_verified_token_is_remembered_until_it_expires_and_no_longer() -> None:
    """Verified once, a token is served from the cache (each time for the caller's own
    address), up to its expiry (``exp`` with the 30 s of allowed clock skew), then refused
    as before; a token that does not verify is never remembered; the cache is bounded."""
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    soon = dt.datetime.now(dt.UTC) - LEEWAY + dt.timedelta(seconds=1.5)
    token = jwt.encode(_claims(exp=soon), SECRET, algorithm="HS256")
    first = verifier.verify(token, source="10.0.0.1")
    again = verifier.verify(token, source="10.0.0.2")
    assert (first.tenant, first.role) == (again.tenant, again.role) == ("acme", Role.analyst)
    assert (first.actor.source, again.actor.source) == ("10.0.0.1", "10.0.0.2")
    assert again.expires_at is not None
    time.sleep(max(0.0, again.expires_at - time.time()) + 0.1)
    assert _refused(verifier, token) == "the token has expired"
    assert _refused(verifier, token) == "the token has expired"
    forged = jwt.encode(_claims(), "another-secret-that-is-long-enough-too", algorithm="HS256")
    assert _refused(verifier, forged) == "the token's signature does not verify"
    verifier.MAX_CACHED = 2
    for subject in ("a", "b", "c"):
        verifier.verify(jwt.encode(_claims(sub=subject), SECRET, algorithm="HS256"))
    assert len(verifier._verified) == 2


def test_wrong_signature_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    forged = jwt.encode(_claims(), SECRET + "x", algorithm="HS256")
    assert _refused(verifier, forged) == "the token's signature does not verify"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    by_keys = JwtVerifier(Settings(jwt_public_keys=_pem(rsa_key)))
    wrong_key = jwt.encode(_claims(), other, algorithm="RS256")
    assert _refused(by_keys, wrong_key) == "the token's signature does not verify"
    # A tampered payload with the original signature.
    head, _, signature = jwt.encode(_claims(), SECRET, algorithm="HS256").split(".")
    payload = _unsigned({}, _claims(role="admin")).split(".")[1]
    tampered = f"{head}.{payload}.{signature}"
    assert _refused(verifier, tampered) == "the token's signature does not verify"


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    body = json.dumps(claims, default=lambda d: int(d.timestamp())).encode()
    return f"{part(json.dumps(header).encode())}.{part(body)}.{part(signature)}"


def test_alg_none_is_refused() -> None:
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    token = _unsigned({"alg": "none", "typ": "JWT"}, _claims())
    assert "'none', which this server does not accept" in _refused(verifier, token)


def test_algorithm_confusion_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """An HS256 token "signed" with the RSA public key's PEM as the HMAC secret: a verifier
    that let the token pick the algorithm would accept it."""
    pem = _pem(rsa_key)
    verifier = JwtVerifier(Settings(jwt_public_keys=pem))
    header = {"alg": "HS256", "typ": "JWT"}
    unsigned = _unsigned(header, _claims(role="admin")).rsplit(".", 1)[0]
    mac = hmac.new(pem.encode(), unsigned.encode(), hashlib.sha256).digest()
    token = f"{unsigned}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    message = _refused(verifier, token)
    assert "'HS256', which this server does not accept" in message
    assert "RS256" in message


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (_claims(exp=None), "the token has no 'exp' claim"),
        (_claims(sub=None), "the token has no 'sub' claim"),
        (_claims(tenant=None), "the token has no 'tenant' claim naming its tenant"),
        (_claims(role=None), "the token's 'role' claim must be one of"),
        (_claims(role="owner"), "the token's 'role' claim must be one of"),
        (_claims(tenant="a b"), "the token's 'tenant' claim: tenant 'a b' must be"),
    ],
)
def test_missing_or_bad_claims_are_refused(claims: dict[str, Any], message: str) -> None:
    verifier = JwtVerifier(Settings(jwt_secret=SECRET))
    assert _refused(verifier, jwt.encode(claims, SECRET, algorithm="HS256")).startswith(message)


def test_issuer_audience_and_claim_names_are_configurable() -> None:
    settings = Settings(
        jwt_secret=SECRET,
        jwt_issuer="https://idp.example",
        jwt_audience="tierwise",
        jwt_tenant_claim="https://tierwise/tenant",
        jwt_role_claim="https://tierwise/role",
    )
    verifier = JwtVerifier(settings)
    claims = {
        "sub": "svc",
        "exp": _now() + dt.timedelta(minutes=1),
        "iss": "https://idp.example",
        "aud": ["tierwise", "other"],
        "https://tierwise/tenant": "acme",
        "https://tierwise/role": "viewer",
    }
    assert verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256")).role == Role.viewer
    wrong_issuer = jwt.encode({**claims, "iss": "https://evil"}, SECRET, algorithm="HS256")
    assert (
        _refused(verifier, wrong_issuer) == "the token's issuer (iss) is not 'https://idp.example'"
    )
    wrong_audience = jwt.encode({**claims, "aud": "other"}, SECRET, algorithm="HS256")
    assert _refused(verifier, wrong_audience) == "the token's audience (aud) is not 'tierwise'"
    no_issuer = jwt.encode({k: v for k, v in claims.items() if k != "iss"}, SECRET, "HS256")
    assert _refused(verifier, no_issuer) == "the token has no 'iss' claim"


def test_without_jwt_configuration_jwts_are_refused() -> None:
    verifier = JwtVerifier(Settings())
    assert not verifier.configured
    message = _refused(verifier, jwt.encode(_claims(), SECRET, algorithm="HS256"))
    assert "no TIERWISE_JWT_SECRET or TIERWISE_JWT_PUBLIC_KEYS" in message


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="at least 32 bytes"):
        JwtVerifier(Settings(jwt_secret="short"))
    with pytest.raises(UserError, match="neither PEM text nor a readable file"):
        JwtVerifier(Settings(jwt_public_keys="/no/such/file.pem"))
    with pytest.raises(UserError, match="at least 2048 bits"):
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        JwtVerifier(Settings(jwt_public_keys=_pem(small)))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "authentication required"),
        ("", "authentication required"),
        ("Basic dXNlcjpwYXNz", "must be `Bearer <token>`"),
        ("Bearer ", "must be `Bearer <token>`"),
    ],
)
def test_bearer_header_forms(header: str | None, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        bearer_token(header)


def test_role_table_matches_the_issue() -> None:
    viewer, analyst, ingest, admin = (ROLE_PERMISSIONS[role] for role in Role)
    assert viewer == {Permission.read_reports, Permission.read_customers}
    assert viewer < analyst and Permission.publish_rules in analyst
    assert Permission.manage_keys not in analyst and Permission.read_personal not in analyst
    assert ingest == {Permission.write_data}
    assert admin == set(Permission)


# --- API keys ------------------------------------------------------------------------------


async def test_api_key_create_verify_revoke(engine: AsyncEngine, tenant: str) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        key, plain = await create_key(connection, tenant, Role.ingest, ADMIN, name="erp feed")
    assert plain.startswith(f"tw_{tenant}_{key.id}_")
    verifier = KeyVerifier(engine, cache_seconds=0)
    found = await verifier.verify(plain, source="10.1.1.1")
    assert (found.tenant, found.role, found.subject) == (tenant, Role.ingest, f"key:{key.id}")
    assert found.actor.source == "10.1.1.1"

    async with tenant_transaction(engine, tenant) as connection:
        listed = await list_keys(connection, tenant)
        revoked = await revoke_key(connection, tenant, key.id, ADMIN)
        assert await revoke_key(connection, tenant, "0" * 16, ADMIN) is None
    assert [k.id for k in listed] == [key.id] and listed[0].name == "erp feed"
    assert revoked is not None and revoked.revoked_at is not None
    with pytest.raises(AuthError, match="unknown or revoked API key"):
        await verifier.verify(plain)

    async with tenant_transaction(engine, tenant) as connection:
        entries = await audit.entries(connection, tenant)
    assert [(e.action, e.target, e.actor) for e in entries] == [
        ("key.revoke", f"key:{key.id}", "test:admin"),
        ("key.create", f"key:{key.id}", "test:admin"),
    ]
    assert entries[1].after == {
        "id": key.id,
        "name": "erp feed",
        "role": "ingest",
        "revoked_at": None,
    }
    assert entries[0].before["revoked_at"] is None and entries[0].after["revoked_at"]
    secret = plain.rsplit("_", 1)[1]
    assert all(secret not in json.dumps([e.before, e.after]) for e in entries)


async def test_api_key_secret_is_stored_only_hashed(engine: AsyncEngine, tenant: str) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        key, plain = await create_key(connection, tenant, Role.viewer, ADMIN)
        stored = (await connection.execute(select(api_keys).where(api_keys.c.id == key.id))).one()
    secret = plain.rsplit("_", 1)[1]
    assert secret not in [str(value) for value in stored]
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()


async def test_wrong_secret_malformed_and_other_tenant_keys_are_refused(
    engine: AsyncEngine, tenant: str
) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        _, plain = await create_key(connection, tenant, Role.viewer, ADMIN)
    verifier = KeyVerifier(engine, cache_seconds=30)
    wrong = plain[:-4] + ("0000" if not plain.endswith("0000") else "1111")
    with pytest.raises(AuthError, match="unknown or revoked API key"):
        await verifier.verify(wrong)
    # The same key id and secret claimed for another tenant.
    with pytest.raises(AuthError, match="unknown or revoked API key"):
        await verifier.verify(plain.replace(f"tw_{tenant}_", "tw_other_", 1))
    with pytest.raises(AuthError, match="malformed API key"):
        await verifier.verify("tw_nonsense")


async def test_revocation_takes_effect_within_the_cache_time(
    engine: AsyncEngine, tenant: str
) -> None:
    async with tenant_transaction(engine, tenant) as connection:
        key, plain = await create_key(connection, tenant, Role.viewer, ADMIN)
    verifier = KeyVerifier(engine, cache_seconds=0.3)
    await verifier.verify(plain)
    async with tenant_transaction(engine, tenant) as connection:
        await revoke_key(connection, tenant, key.id, ADMIN)
    await verifier.verify(plain)  # still cached
    await asyncio.sleep(0.35)
    with pytest.raises(AuthError, match="unknown or revoked API key"):
        await verifier.verify(plain)


async def test_authenticator_takes_both_kinds(engine: AsyncEngine, tenant: str) -> None:
    authenticator = Authenticator(Settings(jwt_secret=SECRET), engine)
    async with tenant_transaction(engine, tenant) as connection:
        _, plain = await create_key(connection, tenant, Role.admin, ADMIN)
    by_key = await authenticator.authenticate(f"Bearer {plain}", source="a", request_id="r1")
    assert by_key.role == Role.admin and by_key.actor.request_id == "r1"
    token = issue_token(SECRET, tenant, Role.viewer, "alice")
    by_jwt = await authenticator.authenticate(f"bearer {token}", source="b")
    assert (by_jwt.role, by_jwt.subject, by_jwt.actor.source) == (Role.viewer, "alice", "b")
    with pytest.raises(AuthError, match="neither a well-formed JWT nor an API key"):
        await authenticator.authenticate("Bearer garbage", source="c")


async def test_the_key_cache_drops_the_least_recently_used_answer(
    engine: AsyncEngine, tenant: str
) -> None:
    """It was cleared wholesale at 10,000 entries: a flood of made-up keys sent every known
    client back to the database. Now only the least recently used answer goes."""
    async with tenant_transaction(engine, tenant) as connection:
        plains = [(await create_key(connection, tenant, Role.viewer, ADMIN))[1] for _ in range(4)]
    verifier = KeyVerifier(engine, cache_seconds=60)
    verifier.MAX_CACHED = 3
    first, second, third, fourth = plains
    for plain in (first, second, third):
        await verifier.verify(plain)
    await verifier.verify(first)  # used again: now the most recent
    await verifier.verify(fourth)
    assert [verifier.known(p) for p in plains] == [True, False, True, True]


async def test_failed_authentications_are_limited_per_address(
    engine: AsyncEngine, tenant: str
) -> None:
    settings = Settings(jwt_secret=SECRET, auth_failure_burst=2, auth_failures_per_minute=60)
    authenticator = Authenticator(settings, engine)
    now = [0.0]
    authenticator.failures.clock = lambda: now[0]
    async with tenant_transaction(engine, tenant) as connection:
        _, known = await create_key(connection, tenant, Role.viewer, ADMIN)
        _, unseen = await create_key(connection, tenant, Role.viewer, ADMIN)
    await authenticator.authenticate(f"Bearer {known}", source="10.0.0.1")
    guess = f"tw_{tenant}_{'0' * 16}_{'0' * 64}"
    for _ in range(2):
        with pytest.raises(AuthError):
            await authenticator.authenticate(f"Bearer {guess}", source="10.0.0.1")
    with pytest.raises(RateLimited, match="too many failed authentications"):
        await authenticator.authenticate(f"Bearer {guess}", source="10.0.0.1")
    with pytest.raises(RateLimited):
        await authenticator.authenticate("Bearer garbage", source="10.0.0.1")
    # A key this process has not verified is not looked up from that address meanwhile ...
    with pytest.raises(RateLimited):
        await authenticator.authenticate(f"Bearer {unseen}", source="10.0.0.1")
    # ... while known keys and JWTs are served, and other addresses are not affected.
    await authenticator.authenticate(f"Bearer {known}", source="10.0.0.1")
    token = issue_token(SECRET, tenant, Role.viewer, "alice")
    await authenticator.authenticate(f"Bearer {token}", source="10.0.0.1")
    await authenticator.authenticate(f"Bearer {unseen}", source="10.0.0.2")
    now[0] = 1.0  # a failure's worth refilled
    with pytest.raises(AuthError):
        await authenticator.authenticate(f"Bearer {guess}", source="10.0.0.1")


# --- rate limits -----------------------------------------------------------------------------


def test_rate_limiter_refuses_past_the_burst_then_recovers() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as raised:
        limiter.take("a")
    assert raised.value.retry_after_seconds == 1
    limiter.take("b")  # others are not starved
    now[0] = 1.0
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_rate_limiter_off_at_zero() -> None:
    limiter = RateLimiter(per_minute=0, burst=1)
    for _ in range(100):
        limiter.take("a")


def test_the_docs_role_table_is_the_codes() -> None:
    text = (Path(__file__).parents[2] / "docs/access.md").read_text()
    start = text.index("<!-- role table: generated by `python -m service.access.auth` -->\n")
    end = text.index("<!-- end role table -->")
    shown = text[start:end].split("\n", 1)[1]
    assert shown == role_table_markdown(), (
        "docs/access.md's role table is out of date: paste in `python -m service.access.auth`"
    )
