"""Where the database is and how to reach it: a configured server or the embedded Postgres;
and the bounds on what one tenant's work may take of it.

Users give the plain URL form (``postgresql://user@host:port/db``, or
``postgresql://user@/db?host=/socket/dir``); the driver (asyncpg) is chosen here.

Every tenant transaction (`tenant_transaction`) is bounded in time and in connections: its
statements run under ``statement_timeout`` (an API request's, or the longer one of batch work:
runs, imports, rebuilds), an idle transaction is ended by Postgres, and it takes a connection
only within its tenant's share of the pool and its request's share (`DatabaseLimits`), waiting
for one no longer than its statement timeout. Past a bound it raises `TimedOut`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import asyncpg
from sqlalchemy import ColumnElement, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import Pool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from service.config import Settings
from service.db import exact
from service.errors import TimedOut, UserError

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


@dataclass(frozen=True)
class DatabaseLimits:
    """The bounds of `tenant_transaction` on one engine (see the settings of the same names;
    seconds, 0 meaning no bound)."""

    statement_timeout: float = 30.0
    batch_statement_timeout: float = 600.0
    idle_in_transaction_timeout: float = 60.0
    tenant_connections: int = 8
    request_connections: int = 4

    @classmethod
    def of(cls, settings: Settings) -> DatabaseLimits:
        return cls(
            statement_timeout=settings.statement_timeout,
            batch_statement_timeout=settings.batch_statement_timeout,
            idle_in_transaction_timeout=settings.idle_in_transaction_timeout,
            tenant_connections=settings.tenant_connections,
            request_connections=settings.request_connections,
        )


def _milliseconds(seconds: float) -> str:
    """A Postgres time setting's value (an integer of milliseconds; 0 is no bound)."""
    return str(max(0, round(seconds * 1000)))


POOL_SIZE = 20
"""Connections of a process' pool, kept open once made (no overflow)."""


def create_engine(
    url: URL,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = 0,
    pre_ping: bool = False,
    limits: DatabaseLimits | None = None,
) -> AsyncEngine:
    """The pool (``pool_size`` kept, ``max_overflow`` more opened and closed as needed) and
    its bounds, ``limits``.

    No overflow by default: an overflow connection is closed as soon as it is given back
    while the pool is full, so a pool of 10 + 10 opened a new Postgres connection (a backend
    process, authentication, TLS) for one request in ten at 16 clients; the 20 kept open cost
    the server nothing more at peak than the overflow did."""
    limits = limits or DatabaseLimits()
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        # A failed statement's parameters can be a customer's data or a webhook's secret:
        # never in a log line or an exception's text.
        hide_parameters=True,
        # jsonb written from Python (strategy parameters, audit entries) and read back keeps
        # decimals exact: never a binary float between a user's number and the database.
        json_serializer=exact.dumps,
        json_deserializer=exact.loads_stored,
        # The session defaults bound the system work that runs outside tenant transactions
        # (the dispatcher's claims, the scheduler's listing, probes); migrations lift them.
        connect_args={
            "server_settings": {
                "statement_timeout": _milliseconds(limits.statement_timeout),
                "idle_in_transaction_session_timeout": _milliseconds(
                    limits.idle_in_transaction_timeout
                ),
            }
        },
    )
    _ADMISSIONS[engine.sync_engine] = _Admission(limits)
    return engine


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

# One round trip: every setting is transaction-local (`SET LOCAL`), so they end at commit or
# rollback and a pooled connection never carries one request's tenant or bounds into the next.
_ENTER_TENANT = text(
    f"SELECT set_config('role', '{APP_ROLE}', true), set_config('{TENANT_SETTING}', :tenant, true),"
    " set_config('statement_timeout', :statement_timeout, true),"
    " set_config('idle_in_transaction_session_timeout', :idle_timeout, true)"
)

# On Citus the tenant must reach the workers, where the shards' policies read it: Citus
# forwards `SET LOCAL` statements to the workers of the transaction (with
# citus.propagate_set_commands = 'local'), never `set_config()`. So two round trips there.
_ENTER_TENANT_CITUS = text(
    f"SELECT set_config('role', '{APP_ROLE}', true),"
    " set_config('citus.propagate_set_commands', 'local', true),"
    " set_config('statement_timeout', :statement_timeout, true),"
    " set_config('idle_in_transaction_session_timeout', :idle_timeout, true)"
)


def _literal(value: str) -> str:
    """``value`` as an SQL string literal (`SET` takes no bound parameters)."""
    if "\x00" in value:
        raise UserError("a tenant id cannot contain a NUL character")
    return "'" + value.replace("'", "''") + "'"


# Whether each engine's server runs Citus, found out on its first tenant transaction; by
# pool, which an engine shares with its copies of other execution options (`_self_managed`).
_CITUS: weakref.WeakKeyDictionary[Pool, bool] = weakref.WeakKeyDictionary()


async def is_citus(connection: AsyncConnection) -> bool:
    """Whether ``connection``'s database is a Citus coordinator (has the citus extension):
    the one place where Tierwise tells Citus from a single Postgres. Asked once per engine."""
    pool = connection.engine.sync_engine.pool
    found = _CITUS.get(pool)
    if found is None:
        found = bool(
            await connection.scalar(
                text("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')")
            )
        )
        _CITUS[pool] = found
    return found


async def execute_batch(connection: AsyncConnection, statements: Sequence[str]) -> None:
    """Run ``statements`` (SQL without parameters) inside ``connection``'s transaction: one
    simple query of them all, one round trip, on a single Postgres; one by one on Citus,
    whose coordinator sent such a query whole to a worker: its temporary tables were then made
    there, and the transaction's two-phase commit failed ("cannot PREPARE a transaction that
    has operated on temporary objects"), or a distributed table's statement was refused ("cannot
    execute a distributed query from a query on a shard")."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None, "an open connection has a driver connection"
    assert driver.is_in_transaction(), "the batch runs inside the caller's transaction"
    if await is_citus(connection):
        for statement in statements:
            await driver.execute(statement)
    else:
        await driver.execute(";\n".join(statements))


# Postgres' SQLSTATE for a statement it cancelled (here: by statement_timeout).
QUERY_CANCELED = "57014"


@dataclass
class _Request:
    """The API request running in this context (and the tasks it starts)."""

    # The connections it may hold at once (`request_connections`).
    slots: asyncio.Semaphore
    # Its shared read connection, once made (`RequestConnection`): let go of when the
    # request's other work has to wait for a connection, so that none waits for its own.
    shared: list[RequestConnection] = field(default_factory=list)


_REQUEST: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "tierwise_request", default=None
)
# The task holding a slot in this context: a transaction opened inside another in the same
# task (a run records its start on a second connection) takes no second slot, which could
# otherwise wait for itself.
_SLOT_HOLDER: contextvars.ContextVar[asyncio.Task[object] | None] = contextvars.ContextVar(
    "tierwise_slot_holder", default=None
)


@contextlib.contextmanager
def request_scope(connections: int) -> Iterator[None]:
    """Bound the tenant transactions of the request running in this context (and the tasks
    it starts) to ``connections`` at once."""
    token = _REQUEST.set(_Request(asyncio.Semaphore(max(1, connections))))
    try:
        yield
    finally:
        _REQUEST.reset(token)


class _Admission:
    """Per engine: one semaphore per tenant with work under way, dropped when none is."""

    def __init__(self, limits: DatabaseLimits) -> None:
        self.limits = limits
        self._tenants: weakref.WeakValueDictionary[str, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str, wait: float) -> AsyncIterator[None]:
        """A place among the tenant's (and the request's) connections, waited for at most
        ``wait`` seconds (0: as long as it takes)."""
        task = asyncio.current_task()
        if task is not None and _SLOT_HOLDER.get() is task:
            yield
            return
        taken = await self.acquire(tenant, wait)
        holder = _SLOT_HOLDER.set(task)
        try:
            yield
        finally:
            _SLOT_HOLDER.reset(holder)
            self.release(taken)

    async def acquire(self, tenant: str, wait: float) -> list[asyncio.Semaphore]:
        """Take a place among the tenant's (and the request's) connections; give it back with
        `release`. Raises `TimedOut` after ``wait`` seconds (0: no bound)."""
        semaphores = [self._tenant(tenant)]
        request = _REQUEST.get()
        if request is not None:
            semaphores.insert(0, request.slots)  # always in this order: no two waits cross
            if any(semaphore.locked() for semaphore in semaphores):
                for shared in request.shared:  # idle, it would hold a place we wait for
                    shared.let_go()
        taken: list[asyncio.Semaphore] = []
        try:
            async with asyncio.timeout(wait or None):
                for semaphore in semaphores:
                    await semaphore.acquire()
                    taken.append(semaphore)
        except TimeoutError:
            self.release(taken)
            raise TimedOut(
                f"waited {wait:g} s for a database connection: tenant {tenant!r} already "
                f"uses its {self.limits.tenant_connections} (TIERWISE_TENANT_CONNECTIONS), or "
                f"this request its {self.limits.request_connections} "
                "(TIERWISE_REQUEST_CONNECTIONS); try again later"
            ) from None
        except BaseException:
            self.release(taken)
            raise
        return taken

    @staticmethod
    def release(taken: list[asyncio.Semaphore]) -> None:
        for semaphore in taken:
            semaphore.release()

    def _tenant(self, tenant: str) -> asyncio.Semaphore:
        found = self._tenants.get(tenant)
        if found is None:
            found = asyncio.Semaphore(max(1, self.limits.tenant_connections))
            self._tenants[tenant] = found
        return found


_ADMISSIONS: weakref.WeakKeyDictionary[Engine, _Admission] = weakref.WeakKeyDictionary()


def _admission(engine: AsyncEngine) -> _Admission:
    found = _ADMISSIONS.get(engine.sync_engine)
    if found is None:  # an engine not made by `create_engine` (a test's own): the defaults
        found = _ADMISSIONS[engine.sync_engine] = _Admission(DatabaseLimits())
    return found


def limits_of(engine: AsyncEngine) -> DatabaseLimits:
    return _admission(engine).limits


def is_timeout(error: BaseException) -> bool:
    """Whether ``error`` is Postgres cancelling a statement (statement_timeout), as SQLAlchemy
    or asyncpg (`Compiled`) raises it."""
    if isinstance(error, DBAPIError):
        return getattr(error.orig, "sqlstate", None) == QUERY_CANCELED
    return isinstance(error, asyncpg.PostgresError) and error.sqlstate == QUERY_CANCELED


class Record(asyncpg.Record):  # type: ignore[misc]
    """An asyncpg row whose columns also read as attributes (``row.id``), as SQLAlchemy's."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Compiled:
    """A Core statement compiled once, when the module defining it loads, and run by asyncpg
    on a SQLAlchemy connection (in its transaction): for the API's hottest reads, where
    building the statement, its cache key and its result rows each time cost more than the
    database's work. The statement is still written with the table definitions; only
    ``bindparam`` values vary. Rows are asyncpg records (``row["column"]``)."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: ClauseElement) -> Compiled:
        compiled = cast(SQLCompiler, statement.compile(dialect=_ASYNCPG))
        return cls(str(compiled), tuple(compiled.positiontup or ()))

    async def fetch(self, connection: AsyncConnection, **values: object) -> list[Record]:
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        rows: list[Record] = await driver.fetch(
            self.sql, *(values[name] for name in self.names), record_class=Record
        )
        return rows


@dataclass(frozen=True)
class Keyed:
    """A lookup by key, `Compiled` twice: ``column = $n`` for one key (what a customer card
    asks), ``column = any($n)`` for a batch. With one key in an array, Postgres plans the
    statement anew on every execution (a generic plan cannot know the array's size); the
    scalar form gets a cached generic plan."""

    one: Compiled
    many: Compiled

    @classmethod
    def of(
        cls,
        build: Callable[[Callable[[ColumnElement[Any]], ColumnElement[bool]]], ClauseElement],
    ) -> Keyed:
        """``build(matches)`` makes the statement, with ``matches(column)`` where the key is."""

        def one(column: ColumnElement[Any]) -> ColumnElement[bool]:
            return column == bindparam("key", type_=column.type)

        def many(column: ColumnElement[Any]) -> ColumnElement[bool]:
            return column == any_(bindparam("keys", type_=ARRAY(column.type)))

        return cls(Compiled.of(build(one)), Compiled.of(build(many)))

    async def fetch(
        self, connection: AsyncConnection, keys: Sequence[object], **values: object
    ) -> list[Record]:
        if len(keys) == 1:
            return await self.one.fetch(connection, key=keys[0], **values)
        return await self.many.fetch(connection, keys=list(keys), **values)


async def enter_tenant(
    connection: AsyncConnection,
    tenant: str,
    *,
    statement_timeout: float = 0,
    idle_timeout: float = 0,
) -> None:
    """Confine the rest of ``connection``'s current transaction to ``tenant``'s rows, with
    these bounds (seconds; 0: none)."""
    bounds = {
        "statement_timeout": _milliseconds(statement_timeout),
        "idle_timeout": _milliseconds(idle_timeout),
    }
    if await is_citus(connection):
        await connection.execute(_ENTER_TENANT_CITUS, bounds)
        await connection.exec_driver_sql(f"SET LOCAL {TENANT_SETTING} = {_literal(tenant)}")
    else:
        await connection.execute(_ENTER_TENANT, {"tenant": tenant, **bounds})


@contextlib.asynccontextmanager
async def tenant_transaction(
    engine: AsyncEngine, tenant: str, *, batch: bool = False
) -> AsyncIterator[AsyncConnection]:
    """A transaction that sees and writes only ``tenant``'s rows, enforced by Postgres, within
    the engine's `DatabaseLimits`: ``batch`` work (evaluation runs, previews, imports, rollup
    rebuilds) has the longer statement timeout. Raises `TimedOut` when a statement or the wait
    for a connection outlasts it.

    Everything done for a tenant goes through here; the login role (system work: migrations,
    the scheduler's list of tenants, webhook dispatch) is used directly only where a task spans
    tenants by nature.
    """
    admission = _admission(engine)
    limits = admission.limits
    timeout = limits.batch_statement_timeout if batch else limits.statement_timeout
    async with admission.slot(tenant, timeout):
        try:
            async with engine.begin() as connection:
                await enter_tenant(
                    connection,
                    tenant,
                    statement_timeout=timeout,
                    idle_timeout=limits.idle_in_transaction_timeout,
                )
                yield connection
        except DBAPIError as error:
            if not is_timeout(error):
                raise
            raise _timed_out(timeout, batch=batch) from error


def _timed_out(timeout: float, *, batch: bool) -> TimedOut:
    setting = "BATCH_STATEMENT_TIMEOUT" if batch else "STATEMENT_TIMEOUT"
    return TimedOut(
        f"a database statement ran longer than {timeout:g} s (TIERWISE_{setting}) "
        "and was stopped (its transaction rolled back)"
    )


# Connections being given back after their request was cancelled (kept from the collector).
_CLOSING: set[asyncio.Task[None]] = set()


async def _shielded(end: Coroutine[Any, Any, None]) -> None:
    """Run ``end`` to completion even if the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(end)
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)
    await asyncio.shield(task)


async def _give_back(connection: AsyncConnection, *, commit: bool) -> None:
    """End ``connection``'s transaction (commit or roll back) and return it to the pool, where
    the pool's reset rolls back whatever is left, or discards a connection that fails it.
    Finishes even if the caller is cancelled meanwhile (shielded)."""

    async def end() -> None:
        try:
            if commit:
                await connection.commit()
        finally:
            await connection.close()

    await _shielded(end())


# The shared read connection's transaction, run by asyncpg itself (see `RequestConnection`):
# BEGIN and the tenant's settings in one round trip, the same settings as `_ENTER_TENANT`.
# Only literals: a simple query takes no parameters (the tenant is quoted by `_literal`).
def _begin_tenant(tenant: str, statement_timeout: str, idle_timeout: str, *, citus: bool) -> str:
    bounds = (
        f"set_config('statement_timeout', '{statement_timeout}', true),"
        f" set_config('idle_in_transaction_session_timeout', '{idle_timeout}', true)"
    )
    if citus:  # as `_ENTER_TENANT_CITUS`: the tenant by SET LOCAL, which reaches the workers
        return (
            f"BEGIN; SELECT set_config('role', '{APP_ROLE}', true),"
            f" set_config('citus.propagate_set_commands', 'local', true), {bounds};"
            f" SET LOCAL {TENANT_SETTING} = {_literal(tenant)}"
        )
    return (
        f"BEGIN; SELECT set_config('role', '{APP_ROLE}', true),"
        f" set_config('{TENANT_SETTING}', {_literal(tenant)}, true), {bounds}"
    )


# Per engine: the same pool, its connections in SQLAlchemy's AUTOCOMMIT mode, in which the
# driver neither begins nor ends a transaction of its own (`RequestConnection` does).
_SELF_MANAGED: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def _self_managed(engine: AsyncEngine) -> AsyncEngine:
    found = _SELF_MANAGED.get(engine)
    if found is None:
        found = _SELF_MANAGED[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


async def _end_own_transaction(
    connection: AsyncConnection, driver: asyncpg.Connection, *, commit: bool
) -> None:
    """End the transaction `RequestConnection` began on ``driver`` and return ``connection``
    to the pool; a connection whose transaction did not certainly end (the COMMIT or ROLLBACK
    failed, the connection broke) is discarded instead, closed, never reused: the pool's own
    reset does not see a transaction it did not begin. Shielded from cancellation."""

    async def end() -> None:
        try:
            if not driver.is_closed():  # SQLAlchemy closes it when a statement is cancelled
                await driver.execute("COMMIT" if commit else "ROLLBACK")
        except Exception:
            if commit:
                raise
            # Rolling back after a failure: the failure is what the caller reports, and the
            # connection is discarded below unless its transaction is over.
            log.debug("rolling back a request's transaction failed", exc_info=True)
        finally:
            try:
                if driver.is_closed() or driver.is_in_transaction():
                    await connection.invalidate()
            finally:
                await connection.close()

    await _shielded(end())


class RequestConnection:
    """The connection of one API request's reads: taken from the pool at its first use,
    confined to the tenant once (role and tenant set for its transaction, `SET LOCAL`), and
    shared by everything the request reads, which takes turns (`turn`: one statement
    sequence at a time; an AsyncConnection is never used by two tasks at once).

    `close` (at the end of the request, also a failed or cancelled one) ends the transaction
    and returns the connection: the settings end with the transaction (rolled back after a
    failed or cancelled statement), and a connection whose transaction did not certainly end
    is discarded, never pooled.
    A turn that fails gives the connection back at once (its transaction may be aborted); the
    next turn takes a fresh one and sets the tenant again.

    The transaction is asyncpg's own, not SQLAlchemy's: the connection comes from the pool in
    SQLAlchemy's AUTOCOMMIT mode, and `BEGIN` with the tenant's settings is one simple query
    at checkout, `COMMIT` (or `ROLLBACK`) one at the end; SQLAlchemy's statements in between
    run inside it. (Through SQLAlchemy these were three round trips and more CPU than the
    customer card's own statement: docs/benchmarks.md, issue 16 third pass.) The pool cannot
    reset what it did not begin, hence the discarding (`_end_own_transaction`).

    It counts against the tenant's and the request's connections for as long as it is held;
    when other work of the same request has to wait for a place (`_Admission.acquire`), an
    idle shared connection is given back first, so a request never waits for itself.

    Without ``shared`` (mutations, which keep their own transactions; subscriptions, whose
    connection lives for as long as the WebSocket) each turn is a `tenant_transaction` of
    its own, as before.
    """

    def __init__(self, engine: AsyncEngine, tenant: str, *, shared: bool) -> None:
        self.engine = engine
        self.tenant = tenant
        self.shared = shared
        self._admission = _admission(engine)
        self._turns = asyncio.Lock()
        self._connection: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None
        self._taken: list[asyncio.Semaphore] = []
        self._wanted = False
        self._closed = False
        request = _REQUEST.get()
        if shared and request is not None:
            request.shared.append(self)

    @property
    def held(self) -> bool:
        """Whether a pooled connection is checked out for this request right now."""
        return self._connection is not None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[AsyncConnection]:
        """The connection, for this caller alone until the block ends."""
        if not self.shared:
            async with tenant_transaction(self.engine, self.tenant) as connection:
                yield connection
            return
        async with self._turns:
            if self._closed:
                raise RuntimeError("the request has ended: its database connection is closed")
            try:
                connection = self._connection or await self._checkout()
                yield connection
            except BaseException as error:
                await self._release(commit=False)
                if is_timeout(error):
                    timeout = self._admission.limits.statement_timeout
                    raise _timed_out(timeout, batch=False) from error
                raise
            if self._wanted:
                await self._release(commit=True)

    async def close(self) -> None:
        """End the request's transaction (committed) and give the connection back; no turn
        is taken after this."""
        async with self._turns:
            self._closed = True
            await self._release(commit=True)

    def let_go(self) -> None:
        """Give the connection back as soon as no turn holds it (other work of the request
        is waiting for a place)."""
        if self._connection is None or self._closed:
            return
        self._wanted = True
        if not self._turns.locked():
            task = asyncio.ensure_future(self._let_go())
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)

    async def _let_go(self) -> None:
        async with self._turns:
            if self._wanted:
                await self._release(commit=True)

    async def _checkout(self) -> AsyncConnection:
        limits = self._admission.limits
        taken = await self._admission.acquire(self.tenant, limits.statement_timeout)
        try:
            connection = await _self_managed(self.engine).connect()
            driver: asyncpg.Connection | None = None
            try:
                citus = await is_citus(connection)
                raw: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
                driver = raw
                await raw.execute(
                    _begin_tenant(
                        self.tenant,
                        _milliseconds(limits.statement_timeout),
                        _milliseconds(limits.idle_in_transaction_timeout),
                        citus=citus,
                    )
                )
            except BaseException:
                if driver is None:
                    await _give_back(connection, commit=False)
                else:
                    await _end_own_transaction(connection, driver, commit=False)
                raise
        except BaseException:
            self._admission.release(taken)
            raise
        self._connection, self._driver, self._taken = connection, driver, taken
        return connection

    async def _release(self, *, commit: bool) -> None:
        connection, driver, taken = self._connection, self._driver, self._taken
        self._connection, self._driver, self._taken, self._wanted = None, None, [], False
        try:
            if connection is not None and driver is not None:
                await _end_own_transaction(connection, driver, commit=commit)
        finally:
            self._admission.release(taken)


async def analyze(connection: AsyncConnection, table_name: str) -> None:
    """Fresh planner statistics for a tenant table, from inside a tenant transaction (the app
    role does not own the tables; `tierwise_analyze` lends it the right). Nothing on Citus."""
    if await is_citus(connection):
        # The coordinator has no statistics of the shards (its tables are empty shells), and
        # Citus refuses ANALYZE in a transaction that wrote as the app role ("cannot perform
        # query on placements that were modified in this transaction by a different user"):
        # the workers' autovacuum keeps the shards' statistics (docs/operations.md).
        return
    await connection.execute(text("SELECT tierwise_analyze(:table)"), {"table": table_name})


# Postgres' own defaults for when autovacuum analyzes a table (autovacuum_analyze_threshold,
# autovacuum_analyze_scale_factor).
ANALYZE_BASE_ROWS = 50
ANALYZE_SCALE = 0.1
# Temporary tables get no autovacuum statistics: a statement that filled one with at least
# this many rows analyzes it before the next statement reads it.
ANALYZE_AFTER_ROWS = 10_000

# The function pg_stat_user_tables reads n_mod_since_analyze from (0 for a table with no
# statistics entry), called directly, and the names as text[]: compared with `relname` an
# untyped array is a name[], for which asyncpg first asks the server about the type (a
# recursive catalog query). Together 8 to 10 ms of each new connection's first call, most of
# what `tierwise evaluate` waits on the database for a small tenant besides its commits.
_STATISTICS = text(
    """
    SELECT c.relname, c.reltuples, pg_stat_get_mod_since_analyze(c.oid)
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(CAST(:tables AS text[]))
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
    if await is_citus(connection):  # no ANALYZE there (`analyze`)
        return []
    rows = await connection.execute(_STATISTICS, {"tables": list(tables)})
    stale = [
        name
        for name, estimated, modified in rows
        if estimated < 0 or modified + changed > ANALYZE_BASE_ROWS + ANALYZE_SCALE * estimated
    ]
    for name in stale:
        await analyze(connection, name)
    return stale
