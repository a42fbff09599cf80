"""The ids of rows users see: opaque tokens, never the internal numbers.

Strategies, webhooks, webhook deliveries, evaluation runs and audit entries are keyed inside
by a ``bigint`` from a sequence shared by all tenants (``<table>_id_seq``). Shown as they are,
two ids a tenant saw a day apart would tell it how many rows every tenant made in between. So
an id leaves the service as one AES-128 block, encrypted under the deployment's id key, that
holds the internal id, the kind of row and a tag of the tenant, written base64url without
padding (22 characters, e.g. ``"q2H8o0r3Zy6Q0mWl7N1vXA"``). AES is a keyed pseudorandom
permutation: the tokens look random and show no order, the same row always gets the same token,
and reading one back is one decryption (no table, no lookup). A token of another tenant or
another kind, or a made-up one of the right shape, decrypts to a block whose kind or tag does
not match: it names no row (`Ids.decode` returns None; the API answers NOT_FOUND). Anything
else (wrong length, not base64url) is `MalformedId` (BAD_INPUT).

Why not per-tenant counters, as transition numbers are (``transition_counters``): a counter
row is one more write on a lock every creator of the tenant waits for (deliveries are written
one per tier change and webhook, in the runs' statements), and the five tables would need new
keys and a renumbering migration. Tokens change no table and cost microseconds.

The key: ``TIERWISE_ID_KEY`` when set (any secret text, hashed to the key), else the random one
migration 0015 stored in ``deployment_keys``, so every process of a deployment agrees. Changing
it changes every id the service gives out (ids held by clients stop working).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import struct
import weakref
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.tables import deployment_keys

ID_KEY_NAME = "ids"
"""The ``deployment_keys`` row of the id key."""

TOKEN_LENGTH = 22
"""Characters of an id: 16 bytes in base64url without padding."""

_MAX_ID = 2**63 - 1  # bigint


class RowKind(enum.IntEnum):
    """What an id names; part of the encrypted block, so one kind's id is no other's."""

    strategy = 1
    webhook = 2
    delivery = 3
    run = 4
    audit_entry = 5


class MalformedId(ValueError):
    """Not an id of this service's shape (22 base64url characters)."""


@dataclass(frozen=True)
class IdCodec:
    """Encrypts and decrypts ids under one deployment key (32 bytes of secret)."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ValueError("the id key must have at least 16 bytes")

    def _derived(self, purpose: bytes) -> bytes:
        return hmac.new(self.key, b"tierwise ids: " + purpose, hashlib.sha256).digest()

    @cached_property
    def _cipher(self) -> Cipher[modes.ECB]:
        # ECB over exactly one block is the block cipher itself: a keyed permutation.
        return Cipher(algorithms.AES(self._derived(b"block cipher")[:16]), modes.ECB())

    def tag(self, tenant: str) -> bytes:
        """7 bytes standing for the tenant inside a block."""
        return hmac.new(self._derived(b"tenant tag"), tenant.encode(), hashlib.sha256).digest()[:7]

    def of(self, tenant: str) -> Ids:
        """The ids of one tenant's rows."""
        return Ids(self, tenant, self.tag(tenant))


@dataclass(frozen=True)
class Ids:
    """One tenant's ids: ``encode`` and ``decode`` are inverse for its rows only."""

    codec: IdCodec
    tenant: str
    _tag: bytes

    def encode(self, kind: RowKind, number: int) -> str:
        """The token of the tenant's row ``number`` (a positive bigint) of ``kind``."""
        block = struct.pack(">QB", number, kind) + self._tag
        encryptor = self.codec._cipher.encryptor()
        sealed = encryptor.update(block) + encryptor.finalize()
        return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def decode(self, kind: RowKind, token: str) -> int | None:
        """The internal id in ``token``, or None when it is no id of this tenant's ``kind``
        (another tenant's, another kind's, or made up); `MalformedId` when it is not of an
        id's shape at all."""
        sealed = _unpadded(token)
        decryptor = self.codec._cipher.decryptor()
        block = decryptor.update(sealed) + decryptor.finalize()
        number, found_kind = struct.unpack(">QB", block[:9])
        if found_kind != kind or not hmac.compare_digest(block[9:], self._tag):
            return None
        return number if 0 < number <= _MAX_ID else None


def _unpadded(token: str) -> bytes:
    if len(token) != TOKEN_LENGTH or not token.isascii():
        raise MalformedId(token)
    try:
        sealed = base64.urlsafe_b64decode(token + "==")
    except (binascii.Error, ValueError):
        raise MalformedId(token) from None
    # Only the canonical spelling (the last character's 4 spare bits zero, no `+`, `/`): one
    # id, one token.
    if base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=") != token:
        raise MalformedId(token)
    return sealed


def configured_key(secret: str) -> bytes:
    """The id key of a ``TIERWISE_ID_KEY`` text."""
    return hashlib.sha256(b"tierwise id key: " + secret.encode()).digest()


_CODECS: weakref.WeakKeyDictionary[AsyncEngine, IdCodec] = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=4)
def _configured_codec(secret: str) -> IdCodec:
    # Once per secret, not per request: the key's hash and the cipher's setup.
    return IdCodec(configured_key(secret))


def known_codec(engine: AsyncEngine, configured: SecretStr | None) -> IdCodec | None:
    """`codec` when it needs no database read (the key is configured, or ``engine`` has read
    it already), else None."""
    if configured is not None:  # at least 16 characters (`Settings.id_key`)
        return _configured_codec(configured.get_secret_value())
    return _CODECS.get(engine)


async def codec(
    engine: AsyncEngine,
    configured: SecretStr | None,
    connect: Callable[[], AbstractAsyncContextManager[AsyncConnection]] | None = None,
) -> IdCodec:
    """The deployment's codec: of ``configured`` (``TIERWISE_ID_KEY``) when given, else of the
    key stored in the database, read once per engine through ``connect`` (default: a
    connection of the engine; an API request passes its own, so reading the key never waits
    for a second connection of its share of the pool). `LookupError` when there is none (the
    database is older than migration 0015)."""
    found = known_codec(engine, configured)
    if found is None:
        async with (connect or engine.connect)() as connection:
            key = await connection.scalar(
                select(deployment_keys.c.key).where(deployment_keys.c.name == ID_KEY_NAME)
            )
        if key is None:
            raise LookupError("no id key in the database: it is older than migration 0015")
        found = _CODECS.setdefault(engine, IdCodec(bytes(key)))
    return found
