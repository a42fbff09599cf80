"""Where the database is and how to reach it: a configured server or the embedded Postgres.

Users give the plain URL form (``postgresql://user@host:port/db``, or
``postgresql://user@/db?host=/socket/dir``); the driver (asyncpg) is chosen here.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service.config import Settings
from service.errors import UserError

log = logging.getLogger(__name__)

_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


def async_url(plain: str) -> URL:
    """The asyncpg SQLAlchemy URL for a user's plain ``postgresql://`` URL."""
    try:
        url = make_url(plain)
    except ArgumentError:
        raise UserError(f"TIERWISE_DATABASE_URL is not a database URL: {plain!r}") from None
    if url.drivername not in _SCHEMES:
        raise UserError(
            f"TIERWISE_DATABASE_URL must start with postgresql://, not {url.drivername}://"
        )
    return _rename_query(url, "sslmode", "ssl").set(drivername="postgresql+asyncpg")


def plain_url(url: URL) -> str:
    """The ``postgresql://`` form of ``url`` (for people, psql, pgserver's equals and the
    dedicated asyncpg connections that LISTEN)."""
    plain = _rename_query(url, "ssl", "sslmode").set(drivername="postgresql")
    return plain.render_as_string(hide_password=False)


def _rename_query(url: URL, old: str, new: str) -> URL:
    # libpq and asyncpg's DSN parser spell TLS `sslmode`; SQLAlchemy hands query parameters to
    # asyncpg.connect() as arguments, where it is `ssl` (same values: disable ... verify-full).
    if old not in url.query:
        return url
    query = dict(url.query)
    query[new] = query.pop(old)
    return url.set(query=query)


def create_engine(url: URL, *, pool_size: int = 10, pre_ping: bool = False) -> AsyncEngine:
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping
    )


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) the embedded Postgres in ``data_dir``; yield its plain URL.

    pgserver keeps the cluster in ``data_dir/pg``; a second process on the same directory
    shares the running server, and the last one out stops it.
    """
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server  # only needed without a server

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    log.debug("starting embedded Postgres in %s", pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def embedded_exists(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds an embedded Postgres cluster (made by an earlier start)."""
    return (data_dir / "pg" / "PG_VERSION").is_file()


def location(settings: Settings) -> str:
    """Where Tierwise looks for its database, in words for an error message."""
    if settings.database_url:
        url = async_url(settings.database_url).set(drivername="postgresql")
        return f"TIERWISE_DATABASE_URL ({url.render_as_string(hide_password=True)})"
    return f"the embedded Postgres in {settings.data_dir.resolve()} (TIERWISE_DATA_DIR)"


def how_to_point(settings: Settings) -> str:
    """How to point Tierwise at the database a user meant, in words for an error message."""
    if settings.database_url:
        return (
            "point TIERWISE_DATABASE_URL at the database `tierwise migrate` set up, or unset it "
            "to use the embedded Postgres of the folder where `tierwise demo` ran"
        )
    return (
        "run the command in the folder where `tierwise demo` or `tierwise migrate` ran, set "
        "TIERWISE_DATA_DIR to that folder's .tierwise, or set TIERWISE_DATABASE_URL to a "
        "Postgres server"
    )


@contextlib.contextmanager
def database_url(settings: Settings, *, create: bool = True) -> Iterator[URL]:
    """The configured server's URL, or the embedded one's for as long as the block runs.

    Without ``create``, an embedded Postgres that does not exist yet is not made: UserError
    says where Tierwise looked and how to point it at a database (a command that needs data
    must not start a new, empty one in whatever folder it runs in)."""
    if settings.database_url:
        yield async_url(settings.database_url)
        return
    if not create and not embedded_exists(settings.data_dir):
        raise UserError(
            f"no Tierwise database here: looked for {location(settings)}, which does not "
            f"exist, and TIERWISE_DATABASE_URL is not set. To use an existing database, "
            f"{how_to_point(settings)}; `tierwise migrate` or `tierwise demo` sets up a new one "
            "here."
        )
    with embedded_postgres(settings.data_dir) as plain:
        yield async_url(plain)


# The role every tenant's work runs as (created by migration 0003): it owns no table and cannot
# bypass row-level security, whose policies admit only the rows of `TENANT_SETTING`.
APP_ROLE = "tierwise_app"
TENANT_SETTING = "tierwise.tenant"

# One round trip: both settings are transaction-local (`SET LOCAL`), so they end at commit or
# rollback and a pooled connection never carries one request's tenant into the next.
_ENTER_TENANT = text(
    f"SELECT set_config('role', '{APP_ROLE}', true), set_config('{TENANT_SETTING}', :tenant, true)"
)


async def enter_tenant(connection: AsyncConnection, tenant: str) -> None:
    """Confine the rest of ``connection``'s current transaction to ``tenant``'s rows."""
    await connection.execute(_ENTER_TENANT, {"tenant": tenant})


@contextlib.asynccontextmanager
async def tenant_transaction(engine: AsyncEngine, tenant: str) -> AsyncIterator[AsyncConnection]:
    """A transaction that sees and writes only ``tenant``'s rows, enforced by Postgres.

    Everything done for a tenant goes through here; the login role (system work: migrations,
    the scheduler's list of tenants, webhook dispatch) is used directly only where a task spans
    tenants by nature.
    """
    async with engine.begin() as connection:
        await enter_tenant(connection, tenant)
        yield connection


async def analyze(connection: AsyncConnection, table_name: str) -> None:
    """Fresh planner statistics for a tenant table, from inside a tenant transaction (the app
    role does not own the tables; `tierwise_analyze` lends it the right)."""
    await connection.execute(text("SELECT tierwise_analyze(:table)"), {"table": table_name})


# Postgres' own defaults for when autovacuum analyzes a table (autovacuum_analyze_threshold,
# autovacuum_analyze_scale_factor).
ANALYZE_BASE_ROWS = 50
ANALYZE_SCALE = 0.1

_STATISTICS = text(
    """
    SELECT c.relname, c.reltuples, coalesce(s.n_mod_since_analyze, 0)
    FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(:tables)
    """
)


async def analyze_stale(
    connection: AsyncConnection, tables: Sequence[str], *, changed: int = 0
) -> list[str]:
    """ANALYZE those of ``tables`` (tenant tables) whose planner statistics are stale, by
    autovacuum's own rule: never gathered, or more rows changed since the last ANALYZE than
    ``ANALYZE_BASE_ROWS + ANALYZE_SCALE * rows``. ``changed`` counts the rows this transaction
    wrote, which the statistics views do not show before commit. Returns the tables analyzed.

    Runs, loads and the API cannot wait for autovacuum, which may be late or off: planned on
    no statistics, Postgres takes a tenant's rows to be a handful and nests loops (a `where`
    over 400 customers took 45 s instead of 0.2)."""
    rows = await connection.execute(_STATISTICS, {"tables": list(tables)})
    stale = [
        name
        for name, estimated, modified in rows
        if estimated < 0 or modified + changed > ANALYZE_BASE_ROWS + ANALYZE_SCALE * estimated
    ]
    for name in stale:
        await analyze(connection, name)
    return stale
