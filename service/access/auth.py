"""Who is calling and what they may do: roles and their permissions, bearer tokens (signed JWTs
and API keys) verified into a `Principal`.

What each role may do is written once, in `ROLE_PERMISSIONS`; the API's checks, the README's
role table and the tests all read it from there.

Two kinds of bearer token are accepted (``Authorization: Bearer <token>``):

- **JWTs**, signed with HS256 by a configured secret, or with RS256/RS384/RS512 or
  ES256/ES384/ES512 by the private half of a configured public key (a gateway's tokens). The
  algorithm must be one the configured keys are for: ``none`` is never accepted, and an HS256
  token is never checked against a public key (algorithm confusion). ``exp`` and ``sub`` are
  required, ``iss`` and ``aud`` checked when configured; the tenant and the role come from the
  claims named by the settings (``tenant`` and ``role`` by default).
- **API keys** for machine clients: ``tw_<tenant>_<key id>_<secret>``, the key id 16 and the
  secret 64 hex digits (256 random bits). Only the SHA-256 of the secret is stored (a fast hash
  is right for a random 256-bit secret: there is nothing to guess); the key is shown once, at
  creation. A verified key is cached for `Settings.api_key_cache_seconds`, so a revocation takes
  effect on every replica within that time.

Nothing here knows GraphQL: the API layer turns `AuthError` into its own errors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.access import audit
from service.access.audit import Actor
from service.access.ratelimit import RateLimiter
from service.access.roles import Role as Role
from service.config import Settings
from service.data.records import FieldError, check_tenant_id
from service.db.database import tenant_transaction
from service.db.tables import api_keys
from service.errors import UserError


class Permission(enum.StrEnum):
    """One thing a caller may do; `PERMISSION_DESCRIPTIONS` says what each covers."""

    read_reports = "read_reports"
    read_customers = "read_customers"
    read_personal = "read_personal"
    check_rules = "check_rules"
    publish_rules = "publish_rules"
    manage_strategies = "manage_strategies"
    write_data = "write_data"
    erase_customers = "erase_customers"
    manage_keys = "manage_keys"
    manage_webhooks = "manage_webhooks"
    read_audit = "read_audit"
    fit_models = "fit_models"


PERMISSION_DESCRIPTIONS: Mapping[Permission, str] = {
    Permission.read_reports: "segments, published schemes, strategies, the metric catalog",
    Permission.read_customers: "customers, their tiers, metrics, history and explanations; "
    "live tier changes",
    Permission.read_personal: "customers' name, email and phone (null for everyone else)",
    Permission.check_rules: "check and preview rule text (nothing is written)",
    Permission.publish_rules: "publish schemes and run evaluations",
    Permission.manage_strategies: "save and delete strategies",
    Permission.write_data: "write customers, orders and events; delete orders and events",
    Permission.erase_customers: "erase customers: everything of them goes for good, the audit "
    "log keeps that it happened",
    Permission.manage_keys: "create, list and revoke API keys",
    Permission.manage_webhooks: "register, list and delete webhooks; read and replay deliveries",
    Permission.read_audit: "the audit log: who changed rules, strategies, keys and webhooks, "
    "deleted data or erased customers",
    Permission.fit_models: "fit the prediction models now (the scheduler refits them anyway)",
}

_VIEWER = frozenset({Permission.read_reports, Permission.read_customers})

# The one role table. Personal data (name, email, phone) is for admins only: tiers, metrics
# and strategies are keyed by the customer's id in the caller's own systems, which hold the
# contact details; dashboards, frontends and analysts never need them from Tierwise, and data
# minimisation says a role that does not need personal data should not see it. Erasing is for
# admins only too: it cannot be undone and takes a customer's whole history, where a data
# feed (ingest) needs at most to take back a mistaken order or event (write_data).
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.viewer: _VIEWER,
    Role.analyst: _VIEWER
    | {Permission.check_rules, Permission.publish_rules, Permission.manage_strategies},
    Role.ingest: frozenset({Permission.write_data}),
    Role.admin: frozenset(Permission),
}

ROLE_DESCRIPTIONS: Mapping[Role, str] = {
    Role.viewer: "dashboards and frontends: read segments, customers and strategies",
    Role.analyst: "rule authors: also check, preview and publish rules, manage strategies",
    Role.ingest: "data feeds (ERP, shop, CRM): write customers, orders and events only",
    Role.admin: "everything, with personal data, plus API keys, webhooks and the audit log",
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


class AuthError(Exception):
    """The caller is not authenticated: no token, or one that does not verify. The message
    says which, for the client (never what a valid token would look like)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Principal:
    """A verified caller: the tenant and role its token gives, who it is, and how it is named
    in audit entries."""

    tenant: str
    role: Role
    subject: str
    actor: Actor
    # "jwt:<subject>" or "key:<key id>": what rate limits are counted per.
    identity: str
    expires_at: float | None = None
    """Unix time from which the token no longer verifies (a JWT's ``exp`` and the allowed
    clock skew); None for an API key, which lasts until it is revoked."""

    def may(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    def at(self, source: str, request_id: str | None = None) -> Principal:
        """The same principal, acting from ``source`` (a client address) in one request."""
        actor = dataclasses.replace(self.actor, source=source, request_id=request_id)
        return dataclasses.replace(self, actor=actor)


def principal(
    tenant: str,
    role: Role,
    subject: str,
    identity: str,
    source: str,
    *,
    expires_at: float | None = None,
) -> Principal:
    return Principal(
        tenant, role, subject, Actor(subject, role.value, source), identity, expires_at
    )


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value."""
    if authorization is None or not authorization.strip():
        raise AuthError(
            "authentication required: send `Authorization: Bearer <token>` with a JWT or an API key"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be `Bearer <token>`")
    return token.strip()


# --- JWTs ----------------------------------------------------------------------------------

HMAC_ALGORITHMS = ("HS256",)
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
MIN_SECRET_BYTES = 32
# Clock skew allowed between the token's issuer and this server, for exp, nbf and iat.
LEEWAY = dt.timedelta(seconds=30)

_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def public_keys(configured: str) -> list[tuple[str, Any]]:
    """(algorithm, key) pairs for configured PEM public keys: the PEM text of one or more
    keys, or the path of a file holding them."""
    text = configured
    if "-----BEGIN" not in configured:
        path = Path(configured).expanduser()
        try:
            text = path.read_text()
        except OSError as error:
            raise UserError(
                f"TIERWISE_JWT_PUBLIC_KEYS: neither PEM text nor a readable file: {error}"
            ) from None
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        raise UserError(
            "TIERWISE_JWT_PUBLIC_KEYS holds no `-----BEGIN PUBLIC KEY-----` block (PEM "
            "SubjectPublicKeyInfo, as `openssl pkey -pubout` writes)"
        )
    pairs: list[tuple[str, Any]] = []
    for number, block in enumerate(blocks, start=1):
        try:
            key = load_pem_public_key(block.encode())
        except ValueError as error:
            raise UserError(f"TIERWISE_JWT_PUBLIC_KEYS: key {number}: {error}") from None
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < 2048:
                raise UserError(
                    f"TIERWISE_JWT_PUBLIC_KEYS: key {number} is a {key.key_size}-bit RSA key; "
                    "at least 2048 bits are required"
                )
            pairs.extend((algorithm, key) for algorithm in RSA_ALGORITHMS)
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHMS:
            pairs.append((EC_ALGORITHMS[key.curve.name], key))
        else:
            raise UserError(
                f"TIERWISE_JWT_PUBLIC_KEYS: key {number} is neither RSA nor EC on P-256, "
                "P-384 or P-521"
            )
    return pairs


class JwtVerifier:
    """Verifies JWTs against the configured secret and public keys.

    A token that verified is remembered until it expires (its ``exp`` and the allowed clock
    skew), by its exact text: the same text is the same signed claims, and checking the
    signature and the claims again was a tenth of a small request's CPU. At most `MAX_CACHED`
    tokens, the least recently used forgotten first; a token that fails is never cached.
    """

    MAX_CACHED = 4096

    def __init__(self, settings: Settings) -> None:
        self.keys: list[tuple[str, Any]] = []
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value().encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise UserError(
                    f"TIERWISE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
            self.keys.extend((algorithm, secret) for algorithm in HMAC_ALGORITHMS)
        if settings.jwt_public_keys:
            self.keys.extend(public_keys(settings.jwt_public_keys))
        self.algorithms = sorted({algorithm for algorithm, _ in self.keys})
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.tenant_claim = settings.jwt_tenant_claim
        self.role_claim = settings.jwt_role_claim
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    @property
    def configured(self) -> bool:
        return bool(self.keys)

    def verify(self, token: str, *, source: str = "") -> Principal:
        known = self._verified.get(token)
        if known is not None:
            assert known.expires_at is not None
            if time.time() < known.expires_at:
                self._verified.move_to_end(token)
                return known if not source else known.at(source)
            del self._verified[token]  # expired: verified again, which says so
        found = self._verify(token)
        self._verified[token] = found
        if len(self._verified) > self.MAX_CACHED:
            self._verified.popitem(last=False)
        return found if not source else found.at(source)

    def _verify(self, token: str) -> Principal:
        if not self.keys:
            raise AuthError(
                "JWTs are not accepted here: the server has no TIERWISE_JWT_SECRET or "
                "TIERWISE_JWT_PUBLIC_KEYS (use an API key)"
            )
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(
                "the bearer token is neither a well-formed JWT nor an API key"
            ) from None
        algorithm = header.get("alg")
        candidates = [key for name, key in self.keys if name == algorithm]
        if not candidates:
            # Covers `none` and algorithm confusion: a token only ever meets keys of the kind
            # its algorithm is for.
            raise AuthError(
                f"the token is signed with {algorithm!r}, which this server does not accept "
                f"(accepted: {', '.join(self.algorithms)})"
            )
        claims: dict[str, Any] | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[str(algorithm)],
                    options={"require": ["exp", "sub"]},
                    issuer=self.issuer,
                    audience=self.audience,
                    leeway=LEEWAY,
                )
                break
            except jwt.InvalidSignatureError:
                continue  # another configured key of the same kind may have signed it
            except jwt.ExpiredSignatureError:
                raise AuthError("the token has expired") from None
            except jwt.ImmatureSignatureError:
                raise AuthError("the token is not valid yet (nbf or iat in the future)") from None
            except jwt.MissingRequiredClaimError as error:
                raise AuthError(f"the token has no {error.claim!r} claim") from None
            except jwt.InvalidIssuerError:
                raise AuthError(f"the token's issuer (iss) is not {self.issuer!r}") from None
            except jwt.InvalidAudienceError:
                if self.audience is None:
                    raise AuthError(
                        "the token names an audience (aud) but the server has none configured "
                        "(TIERWISE_JWT_AUDIENCE)"
                    ) from None
                raise AuthError(f"the token's audience (aud) is not {self.audience!r}") from None
            except jwt.PyJWTError as error:
                raise AuthError(f"the token is not valid: {error}") from None
        if claims is None:
            raise AuthError("the token's signature does not verify")
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthError("the token's subject (sub) must be a non-empty string")
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str):
            raise AuthError(f"the token has no {self.tenant_claim!r} claim naming its tenant")
        try:
            check_tenant_id(tenant)
        except FieldError as error:
            raise AuthError(f"the token's {self.tenant_claim!r} claim: {error}") from None
        role = _role(claims.get(self.role_claim), f"the token's {self.role_claim!r} claim")
        return principal(
            tenant,
            role,
            subject,
            f"jwt:{tenant}:{subject}",
            "",
            expires_at=float(claims["exp"]) + LEEWAY.total_seconds(),
        )


def _role(value: object, where: str) -> Role:
    if isinstance(value, str) and value in Role.__members__:
        return Role(value)
    roles = ", ".join(role.value for role in Role)
    raise AuthError(f"{where} must be one of {roles}, not {value!r}")


def issue_token(
    secret: str,
    tenant: str,
    role: Role,
    subject: str,
    *,
    lifetime: dt.timedelta = dt.timedelta(hours=1),
    claims: Mapping[str, Any] | None = None,
) -> str:
    """An HS256 token for ``tenant`` and ``role`` (development and tests: in production a
    gateway or identity provider issues tokens)."""
    now = dt.datetime.now(dt.UTC)
    payload = {
        "sub": subject,
        "tenant": tenant,
        "role": role.value,
        "iat": now,
        "exp": now + lifetime,
        **(claims or {}),
    }
    return jwt.encode(payload, secret, algorithm="HS256")


# --- API keys ------------------------------------------------------------------------------

KEY_PREFIX = "tw_"
_KEY = re.compile(r"tw_(?P<tenant>.+)_(?P<id>[0-9a-f]{16})_(?P<secret>[0-9a-f]{64})")


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: never its secret."""

    id: str
    tenant: str
    name: str
    role: Role
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None

    def summary(self) -> dict[str, Any]:
        """What audit entries record of a key."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        row.id, row.tenant_id, row.name, Role(row.role), row.created_at, row.created_by,
        row.revoked_at,
    )  # fmt: skip


async def create_key(
    connection: AsyncConnection, tenant: str, role: Role, actor: Actor, *, name: str = ""
) -> tuple[ApiKey, str]:
    """A new key for ``tenant`` and ``role``, and its plain text (shown once: only a hash of
    its secret is kept). Audited as ``key.create`` in the same transaction."""
    check_tenant_id(tenant)
    key_id = secrets.token_hex(8)
    secret = secrets.token_hex(32)
    row = (
        await connection.execute(
            api_keys.insert()
            .values(
                tenant_id=tenant,
                id=key_id,
                name=name,
                role=role.value,
                secret_hash=_hash(secret),
                created_by=actor.subject,
            )
            .returning(api_keys)
        )
    ).one()
    key = _api_key(row)
    await audit.record(
        connection, tenant, actor, "key.create", f"key:{key_id}", after=key.summary()
    )
    return key, f"{KEY_PREFIX}{tenant}_{key_id}_{secret}"


async def list_keys(connection: AsyncConnection, tenant: str) -> list[ApiKey]:
    """Every key of ``tenant``, revoked ones too, oldest first."""
    rows = await connection.execute(
        select(api_keys)
        .where(api_keys.c.tenant_id == tenant)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return [_api_key(row) for row in rows]


async def revoke_key(
    connection: AsyncConnection, tenant: str, key_id: str, actor: Actor
) -> ApiKey | None:
    """Revoke a key (audited as ``key.revoke``); None when ``tenant`` has no such key. A key
    revoked before stays as it was. Caches of verified keys let it in for at most
    `Settings.api_key_cache_seconds` longer."""
    before = (
        await connection.execute(
            select(api_keys)
            .where(api_keys.c.tenant_id == tenant, api_keys.c.id == key_id)
            .with_for_update()
        )
    ).one_or_none()
    if before is None:
        return None
    if before.revoked_at is not None:
        return _api_key(before)
    after = (
        await connection.execute(
            update(api_keys)
            .where(api_keys.c.tenant_id == tenant, api_keys.c.id == key_id)
            .values(revoked_at=dt.datetime.now(dt.UTC))
            .returning(api_keys)
        )
    ).one()
    revoked = _api_key(after)
    await audit.record(
        connection,
        tenant,
        actor,
        "key.revoke",
        f"key:{key_id}",
        before=_api_key(before).summary(),
        after=revoked.summary(),
    )
    return revoked


_UNKNOWN_KEY = "unknown or revoked API key"


class KeyVerifier:
    """Verifies API keys against the database, caching each answer (yes or no) for
    ``cache_seconds``: a revoked key keeps working for at most that long. Past `MAX_CACHED`
    answers the least recently used one is dropped (not all of them: a flood of new keys must
    not send every known client back to the database)."""

    MAX_CACHED = 10_000

    def __init__(self, engine: AsyncEngine, cache_seconds: float) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        # sha256 of the whole key -> (valid until, the principal or the refusal); least
        # recently used first.
        self._cache: OrderedDict[str, tuple[float, Principal | str]] = OrderedDict()

    def _cached(self, digest: str) -> Principal | str | None:
        cached = self._cache.get(digest)
        if cached is None or cached[0] <= time.monotonic():
            return None
        self._cache.move_to_end(digest)
        return cached[1]

    def known(self, token: str) -> bool:
        """Whether ``token``'s answer is cached (verifying it costs no database work)."""
        return self._cached(_hash(token)) is not None

    async def verify(self, token: str, *, source: str = "") -> Principal:
        match = _KEY.fullmatch(token)
        if match is None:
            raise AuthError("malformed API key: expected tw_<tenant>_<key id>_<secret>")
        digest = _hash(token)
        found = self._cached(digest)
        if found is None:
            found = await self._lookup(match)
            self._cache[digest] = (time.monotonic() + self.cache_seconds, found)
            self._cache.move_to_end(digest)
            while len(self._cache) > self.MAX_CACHED:
                self._cache.popitem(last=False)
        if isinstance(found, str):
            raise AuthError(found)
        return found.at(source)

    async def _lookup(self, match: re.Match[str]) -> Principal | str:
        tenant, key_id, secret = match["tenant"], match["id"], match["secret"]
        try:
            check_tenant_id(tenant)
        except FieldError:
            return "malformed API key: its tenant is not a tenant id"
        async with tenant_transaction(self.engine, tenant) as connection:
            row = (
                await connection.execute(
                    select(api_keys.c.role, api_keys.c.secret_hash, api_keys.c.revoked_at).where(
                        api_keys.c.tenant_id == tenant, api_keys.c.id == key_id
                    )
                )
            ).one_or_none()
        if (
            row is None
            or not hmac.compare_digest(row.secret_hash, _hash(secret))
            or row.revoked_at is not None
        ):
            return _UNKNOWN_KEY
        try:
            role = Role(row.role)
        except ValueError:
            return _UNKNOWN_KEY
        return principal(tenant, role, f"key:{key_id}", f"key:{tenant}:{key_id}", "")


class Authenticator:
    """Turns an Authorization header into a `Principal`, or refuses with `AuthError`.

    Failed authentications are counted per client address (``source``) in a token bucket
    (`Settings.auth_failures_per_minute`, `Settings.auth_failure_burst`). An address with
    none left gets `RateLimited` for each further failure, and its API keys the cache does
    not know are refused before any database lookup: guessing keys costs the guesser time and
    the database nothing. Callers that do authenticate are served as ever, also from that
    address (a gateway's, say): JWTs verify without the database, known keys from the cache.
    """

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.jwts = JwtVerifier(settings)
        self.keys = KeyVerifier(engine, settings.api_key_cache_seconds)
        self.failures = RateLimiter(
            settings.auth_failures_per_minute,
            settings.auth_failure_burst,
            what="too many failed authentications from this address",
        )

    async def authenticate(
        self, authorization: str | None, *, source: str, request_id: str | None = None
    ) -> Principal:
        """The caller; `AuthError` if the token does not verify, `RateLimited` instead when
        ``source`` has used up its failures."""
        try:
            token = bearer_token(authorization)
            if token.startswith(KEY_PREFIX):
                if not self.keys.known(token):
                    self.failures.check(source)
                found = await self.keys.verify(token, source=source)
            else:
                found = self.jwts.verify(token, source=source)
        except AuthError:
            self.failures.take(source)
            raise
        return found.at(source, request_id)


def role_table() -> Sequence[tuple[Role, Sequence[Permission]]]:
    """Each role with its permissions in declaration order (for docs and listings)."""
    return [(role, [p for p in Permission if p in ROLE_PERMISSIONS[role]]) for role in Role]


def role_table_markdown() -> str:
    """The role table as docs/access.md shows it (a test keeps the two the same)."""
    roles = list(Role)
    lines = [
        "| permission | what it covers | " + " | ".join(role.value for role in roles) + " |",
        "|---|---|" + "---|" * len(roles),
    ]
    for permission in Permission:
        marks = " | ".join("yes" if allows(role, permission) else "" for role in roles)
        lines.append(f"| `{permission.value}` | {PERMISSION_DESCRIPTIONS[permission]} | {marks} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(role_table_markdown(), end="")
