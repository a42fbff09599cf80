"""Bulk ingest: rows land in a staging table, then one set-based upsert per table, all in one
transaction; a failed import leaves the database as it was.

A CSV file is first COPYed raw into Postgres and cast there (fast path). If any value is in
doubt, or COPY refuses the file (a blank line, a stray column, a quote never closed, bytes that
are not UTF-8; asyncpg raises its own errors there) or could read it otherwise than Python (a
line holding only a backslash and a point, COPY's end of data), that attempt is rolled back
to a savepoint and the file is read again through the Python parser (service.data.records),
which names each bad row's line and field. A file with a bad row is rejected whole unless bad
rows are to be skipped.
Upserts are idempotent on external ids: loading the same rows twice changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.data import rollups
from service.data.kinds import Kind
from service.data.rates import CREATE_RATES, RATE_JOIN, RATE_SQL, Rates, converted_sql
from service.data.readers import (
    BadRow,
    IngestError,
    is_unreadable,
    read_rows,
    row_problems,
    write_bad_rows,
)
from service.data.records import (
    ATTRIBUTE_PREFIX,
    FIELDS,
    MAX_AMOUNT,
    MAX_FRACTION_DIGITS,
    WHITESPACE,
    FieldError,
    RowError,
    check_tenant_id,
    parse_row,
)
from service.db import exact, locks
from service.db.database import (
    ANALYZE_AFTER_ROWS,
    ANALYZE_BASE_ROWS,
    analyze_stale,
    execute_batch,
    tenant_transaction,
)
from service.errors import UserError
from service.metrics import observe_import

# records.WHITESPACE as a Postgres string, in hex escapes: in E'...', \v is the letter v.
_SQL_WHITESPACE = "E'" + "".join(f"\\x{ord(c):02x}" for c in WHITESPACE) + "'"
CHUNK_ROWS = 20_000
# A CSV file smaller than this is parsed in Python, not COPYed and cast in SQL: the SQL casts'
# fixed cost (a raw table, a statement over it, a count) is more than a few rows' parsing (a
# one-order file: 3.6 ms more of Postgres' CPU and 3 ms more of ours, p99 24 against 19 ms).
BULK_MIN_BYTES = 16 * 1024
# Parsed rows staged by one INSERT rather than COPY, up to this many (an API request's orders).
FEW_ROWS = 100
_UNIQUE_VIOLATION = "23505"
_DAY_RATES = "load_day_rates"
COPY_BLOCK = 1 << 20

ProgressCallback = Callable[[int], None]
# Runs inside the load's transaction after the upsert, while `affected_customers` (the
# customers the load touched) exists: how the layers above keep tiers current.
AfterLoad = Callable[[AsyncConnection, str], Awaitable[object]]

# Loads of one tenant queue here, in the process, before they take a pooled connection: the
# database lock (see `_Stage.open`) serialises them anyway, and twenty API writers waiting on
# it inside their transactions held the whole pool, so reads waited for a connection.
_TENANT_LOADS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


@contextlib.asynccontextmanager
async def _load_transaction(engine: AsyncEngine, tenant: str) -> AsyncIterator[AsyncConnection]:
    lock = _TENANT_LOADS.setdefault(tenant, asyncio.Lock())
    async with lock, tenant_transaction(engine, tenant, batch=True) as connection:
        yield connection


@dataclass
class ImportResult:
    kind: Kind
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    customers_created: int = 0
    bulk: bool = False
    """The file went the fast path (COPY, cast in SQL), not the Python reader."""
    converted: int = 0
    """Rates: stored orders converted again because the rate in force for them changed."""

    def summary(self) -> str:
        parts = [
            f"{self.rows} rows read",
            f"{self.inserted} {self.kind} inserted",
            f"{self.updated} updated",
            f"{self.unchanged} unchanged",
        ]
        if self.customers_created and self.kind is not Kind.customers:
            parts.append(f"{self.customers_created} new customers created")
        if self.kind is Kind.rates:
            parts.append(f"{self.converted} orders converted again")
        if self.rejected:
            parts.append(f"{self.rejected} bad rows skipped")
        return ", ".join(parts)


async def import_file(
    engine: AsyncEngine,
    kind: Kind,
    tenant: str,
    path: Path,
    *,
    skip_bad_to: Path | None = None,
    on_progress: ProgressCallback | None = None,
    after_load: AfterLoad | None = None,
) -> ImportResult:
    """Import one CSV or JSON Lines file; with ``skip_bad_to``, bad rows go to that file."""
    raw = read_rows(path, kind)
    result = ImportResult(kind)
    async with _load_transaction(engine, tenant) as connection:
        stage = await _Stage.open(connection, kind, tenant)
        fast = (
            raw.fields
            and _bulk_castable(kind, raw.fields)
            and path.stat().st_size >= BULK_MIN_BYTES
        )
        if fast and kind is Kind.orders:
            await stage.stage_rates()  # for the casts in SQL, which convert every row
        if not (fast and await stage.load_csv(path, raw.fields, result, on_progress)):
            bad = await stage.load_rows(
                raw.rows, result, present_fields=raw.fields or None, on_progress=on_progress
            )
            if bad and skip_bad_to is None:
                raise IngestError.of_rows(str(path), bad)
            if bad and skip_bad_to is not None:
                write_bad_rows(skip_bad_to, bad, raw.fields)
        await stage.upsert(result)
        if after_load is not None:
            await after_load(connection, tenant)
    observe_import(result, "file")
    return result


async def import_rows(
    engine: AsyncEngine,
    kind: Kind,
    tenant: str,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    source: str,
    skip_bad: bool = False,
    after_load: AfterLoad | None = None,
) -> tuple[ImportResult, list[BadRow]]:
    """Check and load ``(line, row)`` pairs in one transaction.

    Raises IngestError (nothing written) when a row is bad, unless ``skip_bad``: then the good
    rows land and the bad ones are returned.
    """
    result = ImportResult(kind)
    async with _load_transaction(engine, tenant) as connection:
        stage = await _Stage.open(connection, kind, tenant)
        bad = await stage.load_rows(rows, result, present_fields=None)
        if bad and not skip_bad:
            raise IngestError.of_rows(source, bad)
        await stage.upsert(result)
        if after_load is not None:
            await after_load(connection, tenant)
    observe_import(result, "api")
    return result, bad


async def import_rates(
    engine: AsyncEngine,
    tenant: str,
    path: Path,
    *,
    skip_bad_to: Path | None = None,
    after_load: AfterLoad | None = None,
) -> ImportResult:
    """Import exchange rates from a CSV or JSON Lines file (`import_rate_rows`)."""
    raw = read_rows(path, Kind.rates)
    return await import_rate_rows(
        engine,
        tenant,
        raw.rows,
        source=str(path),
        fields=raw.fields,
        skip_bad_to=skip_bad_to,
        after_load=after_load,
    )


async def import_rate_rows(
    engine: AsyncEngine,
    tenant: str,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    source: str,
    fields: Sequence[str] = (),
    skip_bad_to: Path | None = None,
    after_load: AfterLoad | None = None,
) -> ImportResult:
    """Import exchange rates (currency, date, rate: one unit of the currency is worth `rate`
    units of the reporting currency from `date` on), then convert again the stored orders
    whose rate in force changed, with their rollups and tiers, in the same transaction.
    Idempotent: the same rows twice change nothing. ``fields``: a CSV file's header."""
    result = ImportResult(Kind.rates)
    rates: dict[tuple[str, Any], Any] = {}
    bad: list[BadRow] = []
    for line, row in rows:
        result.rows += 1
        problems = row_problems(line, row, Kind.rates, check_names=not fields)
        parsed = [] if is_unreadable(row) else parse_row(Kind.rates, line, row)
        if isinstance(parsed, list):
            problems += parsed
        if problems or isinstance(parsed, list):
            bad.append(BadRow(line, row, problems))
            continue
        currency, valid_from, rate = parsed
        rates[currency, valid_from] = rate  # the later line wins
    result.rejected = len(bad)
    if bad and skip_bad_to is None:
        raise IngestError.of_rows(source, bad)
    async with _load_transaction(engine, tenant) as connection:
        stage = await _Stage.open(connection, Kind.rates, tenant)
        reporting = (await Rates.load(connection, tenant)).currency
        if any(currency == reporting for currency, _ in rates):
            raise UserError(
                f"{source}: {reporting} is the reporting currency of tenant {tenant!r}: "
                "its amounts need no rate"
            )
        counts = await connection.execute(
            text(
                """
                WITH src AS (
                    SELECT * FROM unnest(CAST(:currencies AS text[]), CAST(:days AS date[]),
                                         CAST(:rates AS numeric[])) AS r(currency, valid_from, rate)
                ),
                up AS (
                    INSERT INTO exchange_rates AS x (tenant_id, currency, valid_from, rate)
                    SELECT :t, currency, valid_from, rate FROM src
                    ON CONFLICT (tenant_id, currency, valid_from) DO UPDATE
                    SET rate = EXCLUDED.rate WHERE x.rate <> EXCLUDED.rate
                    RETURNING (xmax = 0) AS inserted
                )
                SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
                FROM up
                """
            ),
            {
                "t": tenant,
                "currencies": [c for c, _ in rates],
                "days": [d for _, d in rates],
                "rates": [str(r) for r in rates.values()],
            },
        )
        result.inserted, result.updated = counts.one()
        result.unchanged = len(rates) - result.inserted - result.updated
        if result.inserted or result.updated:
            await (await Rates.load(connection, tenant)).stage(connection)  # the new ones
            converted = await connection.execute(
                text(
                    f"""
                    WITH fresh AS (
                        SELECT o.external_id, {converted_sql("o.original_amount", "o")} AS amount
                        FROM orders o {RATE_JOIN.format(s="o")}
                        WHERE o.tenant_id = :t AND o.currency = ANY(CAST(:currencies AS text[]))
                    ),
                    changed AS (
                        UPDATE orders o SET amount = f.amount FROM fresh f
                        WHERE o.tenant_id = :t AND o.external_id = f.external_id
                          AND f.amount IS NOT NULL AND o.amount <> f.amount
                        RETURNING o.customer_id
                    ),
                    touched AS (
                        INSERT INTO affected_customers
                        SELECT DISTINCT customer_id, true FROM changed
                    )
                    SELECT count(*) FROM changed
                    """
                ),
                {
                    "t": tenant,
                    "reporting": reporting,
                    "currencies": sorted({c for c, _ in rates}),
                },
            )
            result.converted = int(converted.scalar_one())
            if result.converted:
                await rollups.refresh_affected(connection, tenant)
                if after_load is not None:
                    await after_load(connection, tenant)
        del stage
    if bad and skip_bad_to is not None:
        write_bad_rows(skip_bad_to, bad, fields)
    observe_import(result, "file")
    return result


def _bulk_castable(kind: Kind, header: Sequence[str]) -> bool:
    # Attribute columns are merged into one JSON object, which only the Python path does.
    return not (kind is Kind.customers and any(h.startswith(ATTRIBUTE_PREFIX) for h in header))


# The temporary tables of a load, made once per connection (by the tenants' role) and emptied
# at every commit, their rows also undone by every rollback: never carried into the next
# transaction, another tenant's or not. Made and dropped by every load, they cost catalog
# writes each time (with the round trips saved, Postgres' CPU per one-order update halved:
# docs/benchmarks.md section 2). A rollback that took a table away with the transaction that
# made it costs one CREATE the next time.
# Planning: the planner sizes a temporary table by its pages in the current transaction (and
# the rows per page of its last ANALYZE, if a big load ran one), so a one-row load is planned
# as one page whatever came before; a statement's plan is cached by the connection now that
# its tables stay (a big load's ANALYZE invalidates it: loads of 10,000 rows and more).
_PER_CONNECTION = "ON COMMIT DELETE ROWS"


@functools.cache
def _open_sql(kind: Kind) -> tuple[str, ...]:
    """The statements that open a load of ``kind`` after its tenant's load lock (one load per
    tenant at a time: inserts of new ids then cannot race each other) and row, in the same
    batch: the load's settings and temporary tables."""
    columns = ", ".join(f"{spec.stage_column} {spec.type.stage_type}" for spec in FIELDS[kind])
    statements = [
        "SET LOCAL timezone = 'UTC'",  # a time without offset is UTC
        "SET LOCAL work_mem = '256MB'",  # sorts and hashes of big loads
        f"CREATE TEMP TABLE IF NOT EXISTS stage_{kind} (line bigint, {columns}) {_PER_CONNECTION}",
        rollups.CREATE_AFFECTED_KEPT,
    ]
    if kind is Kind.orders:
        statements.append(CREATE_RATES)
    return tuple(statements)


_CURRENCY = [spec.name for spec in FIELDS[Kind.orders]].index("currency")


@functools.cache
def _insert_sql(kind: Kind) -> str:
    """INSERT of a few parsed rows into the stage of ``kind``, one array per column."""
    types = ["bigint", *(spec.type.stage_type for spec in FIELDS[kind])]
    columns = ["line", *(spec.stage_column for spec in FIELDS[kind])]
    arrays = ", ".join(f"${n}::{t}[]" for n, t in enumerate(types, 1))
    return f"INSERT INTO stage_{kind} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"


class _Stage:
    """The temporary tables of one load; their rows disappear with the transaction."""

    day_rates = False
    """Whether `_DAY_RATES` holds the rate of each currency and day staged."""

    def __init__(self, connection: AsyncConnection, kind: Kind, tenant: str) -> None:
        self.connection = connection
        self.kind = kind
        self.tenant = tenant
        self.name = f"stage_{kind}"
        self.fields = FIELDS[kind]
        self.columns = ["line", *(spec.stage_column for spec in self.fields)]
        self.present: set[str] = set()
        self.rates = Rates()
        self.staged_rates: set[str] = set()

    @classmethod
    async def open(cls, connection: AsyncConnection, kind: Kind, tenant: str) -> _Stage:
        try:
            check_tenant_id(tenant)
        except FieldError as error:
            raise UserError(str(error)) from None
        stage = cls(connection, kind, tenant)
        # One round trip (a simple query of several statements, its text the same for every
        # load of the kind), not seven: a one-order load made ~25 round trips in all.
        lock = locks.key(locks.Purpose.ingest, tenant)
        await execute_batch(
            connection,
            [
                f"SELECT pg_advisory_xact_lock({lock})",
                # A literal (the tenant id is checked above: letters, digits, '_', '.', '-').
                f"INSERT INTO tenants (id, name) VALUES ('{tenant}', '{tenant}')"
                " ON CONFLICT (id) DO NOTHING",
                *_open_sql(kind),
            ],
        )
        if kind is Kind.orders:
            stage.rates = await Rates.load(connection, tenant)
        return stage

    async def stage_rates(self, currencies: Collection[str] | None = None) -> None:
        """Stage the tenant's rates of ``currencies`` (None: of all) for the statements that
        convert amounts, those not staged yet: a load of orders in the reporting currency
        stages none."""
        wanted = set(self.rates.currencies if currencies is None else currencies)
        wanted -= self.staged_rates
        if wanted:
            await self.rates.stage(self.connection, created=True, currencies=wanted)
            self.staged_rates |= wanted

    async def _execute(self, sql: str) -> Any:
        return await self.connection.execute(
            text(sql), {"t": self.tenant, "reporting": self.rates.currency}
        )

    async def _driver(self) -> Any:
        driver = (await self.connection.get_raw_connection()).driver_connection
        assert driver is not None, "an open connection has a driver connection"
        return driver

    async def load_csv(
        self,
        path: Path,
        header: Sequence[str],
        result: ImportResult,
        on_progress: ProgressCallback | None,
    ) -> bool:
        """COPY the file raw and cast it in SQL; False (and nothing staged) if any row is in
        doubt, for the Python path to find and explain."""
        raw_columns = [f"raw_{index}" for index in range(len(header))]
        savepoint = await self.connection.begin_nested()
        try:
            await self._execute(
                f"CREATE TEMP TABLE raw_{self.kind} (line bigint GENERATED ALWAYS AS IDENTITY, "
                + ", ".join(f"{c} text" for c in raw_columns)
                + ") ON COMMIT DROP"
            )
            driver = await self._driver()
            copied = await driver.copy_to_table(
                f"raw_{self.kind}",
                source=_file_blocks(path, on_progress),
                columns=raw_columns,
                format="csv",
                header=True,
            )
            rows = int(copied.split()[-1])  # "COPY n"
            present = [spec for spec in self.fields if spec.name in header]
            raw_column = dict(zip(header, raw_columns, strict=True))
            trimmed = [
                f"{_trimmed(raw_column[spec.name], spec.type.sql_refuses_padding)}"
                f" AS t_{spec.stage_column}"
                for spec in present
            ]
            given = [f"t_{spec.stage_column}" for spec in present]
            typed = [
                f"{spec.type.sql_value.format(v=f't_{spec.stage_column}')} AS x_{spec.stage_column}"
                for spec in present
            ]
            values, checks = [], []
            for spec in self.fields:
                if spec.name not in header:
                    values.append("NULL")
                    if spec.required:
                        checks.append("false")
                    continue
                text_value, value = f"t_{spec.stage_column}", f"x_{spec.stage_column}"
                values.append(value)
                check = spec.type.sql_check.format(v=text_value, x=value)
                if check == "true":
                    if spec.required:
                        checks.append(f"{text_value} IS NOT NULL")
                    continue
                checks.append(
                    f"{text_value} IS NOT NULL AND {check}"
                    if spec.required
                    else f"({text_value} IS NULL OR {check})"
                )
            # One pass: each value trimmed once and cast once (OFFSET 0 keeps the subqueries
            # from being merged into the checks, which would compute them again), no copy of
            # the rows in between; the counts from the statuses, not by reading the rows again.
            loaded = await self._execute(
                f"""
                INSERT INTO {self.name} ({", ".join(self.columns)})
                SELECT line, {", ".join(values)} FROM (
                    SELECT {", ".join(["line", *given, *typed])} FROM (
                        SELECT {", ".join(["line", *trimmed])} FROM raw_{self.kind} OFFSET 0
                    ) r OFFSET 0
                ) r
                WHERE {" AND ".join(checks) or "true"}
                """
            )
            staged = loaded.rowcount
            if staged != rows or (self.kind is Kind.orders and await self._unconvertible(rows)):
                await savepoint.rollback()
                self.day_rates = False  # its table went with the savepoint
                return False
        except (DBAPIError, asyncpg.PostgresError, _InDoubt):
            # A cast, the encoding or the CSV layout failed on some row (COPY raises asyncpg's
            # own errors, the statements SQLAlchemy's), or the file holds what COPY reads
            # otherwise than Python: the Python reader finds and explains it.
            await savepoint.rollback()
            self.day_rates = False
            return False
        await savepoint.commit()
        result.rows = rows
        result.bulk = True
        self.present = set(header)
        return True

    async def load_rows(
        self,
        rows: Iterable[tuple[int, Mapping[str, Any]]],
        result: ImportResult,
        *,
        present_fields: Sequence[str] | None,
        on_progress: ProgressCallback | None = None,
    ) -> list[BadRow]:
        """Parse rows in Python and COPY the good ones; return the bad ones.

        ``present_fields`` names the fields the source carries (a CSV header); without it
        (JSON Lines, the API) each row's own keys count and are checked.
        """
        bad: list[BadRow] = []
        driver = await self._driver()
        chunk: list[tuple[Any, ...]] = []
        currencies: set[str | None] = set()  # of the orders staged
        self.present = set(present_fields or ())
        for line, raw in rows:
            result.rows += 1
            problems = row_problems(line, raw, self.kind, check_names=present_fields is None)
            parsed = [] if is_unreadable(raw) else parse_row(self.kind, line, raw)
            if isinstance(parsed, list):
                problems += parsed
            elif self.kind is Kind.orders:
                problems += self._conversion_problems(line, parsed)
            if problems or isinstance(parsed, list):
                bad.append(BadRow(line, raw, problems))
                continue
            if present_fields is None:
                self.present.update(raw)
            if self.kind is Kind.orders:
                currencies.add(parsed[_CURRENCY])
            chunk.append((line, *map(_jsonb_text, parsed)))
            if len(chunk) >= CHUNK_ROWS:
                await self._write(driver, chunk)
                if on_progress:
                    on_progress(len(chunk))
                chunk = []
        if chunk:
            await self._write(driver, chunk)
            if on_progress:
                on_progress(len(chunk))
        if self.kind is Kind.orders:
            await self.stage_rates({c for c in currencies if c not in (None, self.rates.currency)})
        result.rejected = len(bad)
        return bad

    async def _write(self, driver: asyncpg.Connection, chunk: list[tuple[Any, ...]]) -> None:
        """Stage parsed rows: a few in one statement (prepared once per connection), more by
        COPY (two round trips, and the fastest way for many)."""
        if len(chunk) > FEW_ROWS:
            await driver.copy_records_to_table(self.name, records=chunk, columns=self.columns)
        else:
            await driver.execute(_insert_sql(self.kind), *map(list, zip(*chunk, strict=True)))

    def _conversion_problems(self, line: int, parsed: tuple[Any, ...]) -> list[RowError]:
        """An order row whose amount cannot be converted to the reporting currency."""
        row = dict(zip((spec.name for spec in self.fields), parsed, strict=True))
        problem = self.rates.problem(row["currency"], row["ordered_at"], row["amount"])
        return [] if problem is None else [RowError(line, "currency", problem)]

    async def _unconvertible(self, rows: int) -> bool:
        """Whether a staged order has no rate, or too large an amount once converted: the
        Python path then names those rows (`_conversion_problems`). For a big load, asked
        once per currency and day (with the day's largest amount: rounding keeps the order of
        sizes), not once per row, and the rates found kept for the upsert (`_DAY_RATES`); a
        small one is asked row by row, in one round trip."""
        if rows < ANALYZE_AFTER_ROWS:
            found = await self._execute(
                f"""SELECT 1 FROM {self.name} s {RATE_JOIN.format(s="s")}
                    WHERE {RATE_SQL.format(s="s")} IS NULL
                       OR abs({converted_sql("s.amount")}) >= {MAX_AMOUNT} LIMIT 1"""
            )
            return found.first() is not None
        await self._execute(
            f"""CREATE TEMP TABLE {_DAY_RATES} ON COMMIT DROP AS
                SELECT s.currency, s.day, s.amount, r.rate, {RATE_SQL.format(s="s")} AS applied
                FROM (
                    SELECT currency, (ordered_at AT TIME ZONE 'UTC')::date AS day,
                           min(ordered_at) AS ordered_at, max(abs(amount)) AS amount
                    FROM {self.name} GROUP BY 1, 2
                ) s {RATE_JOIN.format(s="s")}"""
        )
        await self._execute(f"ANALYZE {_DAY_RATES}")  # planned as a hash join, not a merge
        self.day_rates = True
        found = await self._execute(
            f"""SELECT 1 FROM {_DAY_RATES} WHERE applied IS NULL
                OR abs(round(amount * applied, {MAX_FRACTION_DIGITS})) >= {MAX_AMOUNT} LIMIT 1"""
        )
        return found.first() is not None

    async def upsert(self, result: ImportResult) -> None:
        if result.rows >= ANALYZE_AFTER_ROWS:  # temp tables get no autovacuum statistics
            await self._execute(f"ANALYZE {self.name}")
        analyzed: list[str] = []
        if self.kind is Kind.customers:
            await self._upsert_customers(result)
        else:
            result.customers_created = await self._create_missing_customers()
            first_load = await self._upsert_facts(result)
            if self.kind is Kind.orders:
                written = result.inserted + result.updated
                if written >= ANALYZE_BASE_ROWS:
                    # The rollups read the orders just written: planned on statistics from
                    # before them (none, for a first load), they joined the orders to their
                    # refunds by nested loop (200,000 orders: over 7 minutes).
                    analyzed = await analyze_stale(self.connection, ("orders",), changed=written)
                    if analyzed:
                        await self._execute("ANALYZE affected_customers")
                await rollups.refresh_affected(
                    self.connection, self.tenant, orders_removed=not first_load
                )
        changed = result.inserted + result.updated + result.customers_created
        if changed >= ANALYZE_BASE_ROWS:
            # Fresh statistics now, not when autovacuum gets round to it (if it is on): planned
            # on the old ones, the next evaluation joined 20,000 customers by nested loop (32 s,
            # not 0.2). Below autovacuum's base threshold no table can have become stale.
            names = dict.fromkeys(("customers", "customer_metrics", str(self.kind)))
            tables = tuple(name for name in names if name not in analyzed)
            if await analyze_stale(self.connection, tables, changed=changed):
                await self._execute("ANALYZE affected_customers")

    async def _create_missing_customers(self) -> int:
        created = await self._execute(
            f"""
            WITH made AS (
                INSERT INTO customers (tenant_id, external_id)
                SELECT DISTINCT :t, customer_external_id FROM {self.name}
                ON CONFLICT (tenant_id, external_id) DO NOTHING
                RETURNING id
            ),
            -- A new customer needs tiers even when a later line took its order away.
            touched AS (INSERT INTO affected_customers SELECT id, false FROM made)
            SELECT count(*) FROM made
            """
        )
        return int(created.scalar_one())

    async def _upsert_facts(self, result: ImportResult) -> bool:
        """Orders or events: update the changed, insert the new (the tenant lock makes the
        insert safe without ON CONFLICT, which doubled its cost), note affected customers.
        Whether this was the tenant's first load of them (nothing stored before)."""
        orders = self.kind is Kind.orders
        table = "orders" if orders else "events"
        payload = [spec.stage_column for spec in self.fields][2:]  # after the two ids
        if orders:
            payload.append("original_amount")
        external_id = "s.external_id"
        if self.kind is Kind.events:  # an event without an id is known by its content
            external_id = (
                "coalesce(s.external_id, 'sha256:' || left(encode(sha256(convert_to("
                "concat_ws(chr(31), s.customer_external_id, s.type, "
                "to_char(s.occurred_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), "
                "trim_scale(s.value)::text, coalesce(s.properties, '{}'::jsonb)::text), "
                "'UTF8')), 'hex'), 40))"
            )
        new = [
            f"coalesce(src.{c}, '{{}}'::jsonb)" if c == "properties" else f"src.{c}"
            for c in payload
        ]
        # One probe of the key per row serves both the update and the insert; a tenant's
        # first load has nothing to probe (a million probes cost seconds).
        matched = f"""
            SELECT src.*, t.customer_id AS old_customer_id, t.external_id IS NOT NULL AS known,
                   (t.customer_id, {", ".join(f"t.{c}" for c in payload)})
                   IS DISTINCT FROM (src.customer_id, {", ".join(new)}) AS differs
            FROM src LEFT JOIN {table} t ON t.tenant_id = :t AND t.external_id = src.external_id
        """
        # In key order, so Postgres answers from the index whatever other tenants hold.
        existing = await self._execute(
            f"SELECT 1 FROM {table} WHERE tenant_id = :t ORDER BY tenant_id, external_id LIMIT 1"
        )
        first_load = existing.first() is None
        # Nothing stored to compare with: every row is inserted, straight from `src` (not
        # through a copy of the rows that the update would read as well).
        updated_rows = f"""
                UPDATE {table} t SET customer_id = src.customer_id,
                    {", ".join(f"{c} = {n}" for c, n in zip(payload, new, strict=True))}
                FROM matched src
                WHERE src.known AND src.differs
                  AND t.tenant_id = :t AND t.external_id = src.external_id
                RETURNING src.customer_id, src.old_customer_id"""
        to_insert, distinct = "matched src WHERE NOT src.known", "(SELECT count(*) FROM src)"
        matched = f"matched AS MATERIALIZED ({matched}),"
        if first_load:
            matched = ""
            updated_rows = "SELECT NULL::bigint AS customer_id, NULL::bigint AS old_customer_id"
            updated_rows += " WHERE false"
            to_insert, distinct = "src", "(SELECT count(*) FROM inserted)"
        # The last line of an id wins: sorting every row of a big load by id to find it costs
        # more than knowing that no id comes twice. Into a new tenant the orders go in
        # unsorted, and an id that comes twice breaks the primary key: then again, sorted.
        # Otherwise asked first. A small load is sorted (no round trip more), and so are
        # events (their id is made in the statement).
        unsorted = (
            orders
            and result.rows >= ANALYZE_AFTER_ROWS
            and (first_load or not await self._repeated_ids())
        )
        staged = {c: f"s.{c}" for c in payload}
        source = self.name
        returned = "customer_id, true AS plain"
        new_rows, plain_rows = "", "inserted"  # the inserted rows with `plain`
        grown = ""
        if orders:
            # A refund's amount is stored negative whichever sign the file gave it; an order
            # without a status is completed (dsl/catalog.py says what each row counts as).
            # Amounts are converted to the reporting currency (service/data/rates.py); the
            # order's own amount and currency are kept beside.
            signed = "CASE WHEN s.refund_of IS NULL THEN s.amount ELSE -abs(s.amount) END"
            staged["original_amount"] = signed
            staged["amount"] = "s.converted"
            # Converted before the customers are joined (OFFSET 0 keeps that order): planned
            # on statistics without the customers just created, the join to them looks like
            # a few rows, and the rates were joined to a million orders by nested loop.
            source = f"""(
                SELECT s.*, {converted_sql(signed)} AS converted
                FROM {self.name} s {self._rate_join()} OFFSET 0
            )"""
            staged["currency"] = "coalesce(s.currency, :reporting)"
            staged["status"] = "coalesce(s.status, 'completed')"
            # Plain: a sale no stored refund names. Not asked in RETURNING: Citus runs that on
            # the shard, where it refuses a subquery on `orders` ("cannot execute a
            # distributed query from a query on a shard").
            returned = f"customer_id, amount, ordered_at, external_id, {rollups.PLAIN_SALE} AS sale"
            # A refund stored before this statement makes a new sale not plain (its rows of
            # this load are not visible to it: a refund and its sale in one load both make
            # their customer recomputed). A tenant's first load has none stored, and is not
            # asked: planned on the statistics of an empty `orders`, the check scanned the
            # table once per new order, over every row this statement was inserting
            # (500,000 orders into a new tenant ran past the 600 s statement timeout).
            stored_refund = (
                "false"
                if first_load
                else """EXISTS (
                    SELECT FROM orders r WHERE r.tenant_id = :t
                    AND r.customer_id = i.customer_id AND r.refund_of = i.external_id
                )"""
            )
            new_rows = f""",
            new_orders AS (
                SELECT i.customer_id, i.amount, i.ordered_at, i.sale AND NOT {stored_refund}
                    AS plain
                FROM inserted i
            ),
            per_customer AS ({rollups.inserted_per_customer("new_orders")})"""
            plain_rows = "per_customer"
            grown = rollups.add_inserted(plain_rows)
            if first_load:
                # The inserted rows are all the tenant's orders: every rollup is computed from
                # them in this statement, and no customer is left to recompute.
                returned = ", ".join(rollups.ROLLUP_COLUMNS)
                new_rows = f""",
            rolled AS MATERIALIZED ({rollups.aggregate_of("inserted")})"""
                plain_rows = "(SELECT customer_id, true AS plain FROM rolled) rolled_customers"
                grown = rollups.upsert_rolled("rolled")

        def statement(unique: bool) -> str:
            latest = external_id if unique else f"DISTINCT ON (1) {external_id}"
            order = "" if unique else "ORDER BY 1, s.line DESC"
            return f"""
            WITH src AS (
                SELECT {latest} AS external_id, c.id AS customer_id,
                       {", ".join(f"{staged[c]} AS {c}" for c in payload)}
                FROM {source} s JOIN customers c
                  ON c.tenant_id = :t AND c.external_id = s.customer_external_id
                {order}
            ),
            {matched}
            updated AS ({updated_rows}
            ),
            inserted AS (
                INSERT INTO {table} (tenant_id, external_id, customer_id, {", ".join(payload)})
                SELECT :t, src.external_id, src.customer_id, {", ".join(new)} FROM {to_insert}
                RETURNING {returned}
            ){new_rows},
            touched AS (
                INSERT INTO affected_customers
                SELECT customer_id, bool_or(recompute) FROM (
                    SELECT customer_id, NOT plain AS recompute FROM {plain_rows}
                    UNION ALL SELECT customer_id, true FROM updated
                    UNION ALL SELECT old_customer_id, true FROM updated
                ) touched GROUP BY customer_id
            ){f", grown AS ({grown})" if orders else ""}
            SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM updated),
                   {distinct}
            """

        if unsorted and first_load:
            attempt = await self.connection.begin_nested()
            try:
                counts = await self._execute(statement(unique=True))
            except DBAPIError as error:
                await attempt.rollback()
                if getattr(error.orig, "pgcode", None) != _UNIQUE_VIOLATION:
                    raise
                counts = await self._execute(statement(unique=False))
            else:
                await attempt.commit()
        else:
            counts = await self._execute(statement(unique=unsorted))
        inserted, updated, distinct = counts.one()
        result.inserted, result.updated = inserted, updated
        result.unchanged = distinct - inserted - updated
        return first_load

    def _rate_join(self) -> str:
        """`RATE_JOIN` for the staged orders `s`: a hash join on the currency and the day to
        the rates `_unconvertible` found when the bulk path staged them (an index probe of
        the rates per row cost more), else `RATE_JOIN` itself."""
        if not self.day_rates:
            return RATE_JOIN.format(s="s")
        return f"""LEFT JOIN {_DAY_RATES} r ON r.currency = s.currency
                    AND r.day = (s.ordered_at AT TIME ZONE 'UTC')::date"""

    async def _repeated_ids(self) -> bool:
        """Whether some external id is staged twice (a hash of the ids: cheaper than the sort
        that keeps each id's last line)."""
        found = await self._execute(
            f"SELECT EXISTS (SELECT FROM {self.name} GROUP BY external_id HAVING count(*) > 1)"
        )
        return bool(found.scalar_one())

    async def _upsert_customers(self, result: ImportResult) -> None:
        # Only the columns the source carries are written, so a file of `customer_id,region`
        # does not erase everyone's age. Attributes merge key by key.
        given = [
            spec.stage_column
            for spec in self.fields[1:]
            if spec.name in self.present
            or (
                spec.name == "attributes"
                and any(f.startswith(ATTRIBUTE_PREFIX) for f in self.present)
            )
        ]

        def new_value(column: str) -> str:
            if column == "attributes":
                return "customers.attributes || coalesce(EXCLUDED.attributes, '{}'::jsonb)"
            return f"EXCLUDED.{column}"

        inserted_values = [
            "coalesce(src.attributes, '{}'::jsonb)" if c == "attributes" else f"src.{c}"
            for c in given
        ]
        conflict = "DO NOTHING"
        if given:
            conflict = (
                f"DO UPDATE SET {', '.join(f'{c} = {new_value(c)}' for c in given)}, "
                # Citus allows only immutable functions in DO UPDATE: the time is inserted.
                "updated_at = EXCLUDED.updated_at "
                f"WHERE ({', '.join(f'customers.{c}' for c in given)}) IS DISTINCT FROM "
                f"({', '.join(new_value(c) for c in given)})"
            )
        counts = await self._execute(
            f"""
            WITH src AS (
                SELECT DISTINCT ON (external_id) * FROM {self.name}
                ORDER BY external_id, line DESC
            ),
            up AS (
                INSERT INTO customers AS customers (tenant_id, external_id, updated_at{
                "".join(", " + c for c in given)
            })
                SELECT :t, src.external_id, now(){
                "".join(", " + v for v in inserted_values)
            } FROM src
                ON CONFLICT (tenant_id, external_id) {conflict}
                RETURNING id, (xmax = 0) AS inserted
            ),
            touched AS (INSERT INTO affected_customers SELECT id, false FROM up)
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                   (SELECT count(*) FROM src)
            FROM up
            """
        )
        inserted, updated, distinct = counts.one()
        result.inserted, result.updated = inserted, updated
        result.unchanged = distinct - inserted - updated
        result.customers_created = inserted


def _trimmed(column: str, refused_if_padded: bool) -> str:
    """SQL: ``column`` without the whitespace Python strips (`records.WHITESPACE`), NULL when
    nothing is left; a value that starts and ends with neither (nearly all) is not copied.
    Where the check refuses a value that ends in whitespace, only its start is looked at."""
    plain = f"ascii({column}) > 32"
    if not refused_if_padded:
        plain += f" AND ascii(right({column}, 1)) > 32"
    return (
        f"CASE WHEN {plain} THEN {column} ELSE nullif(btrim({column}, {_SQL_WHITESPACE}), '') END"
    )


def _jsonb_text(value: Any) -> Any:
    """asyncpg takes jsonb as text: written exactly, numbers digit for digit."""
    if isinstance(value, dict):
        return exact.dumps(value)
    return value


class _InDoubt(Exception):
    """The file holds a line COPY would read otherwise than Python's csv module."""


async def _file_blocks(path: Path, on_progress: ProgressCallback | None) -> AsyncIterator[bytes]:
    # COPY ends its data at a line holding only \. (Postgres before 18), silently: a line
    # starting with \. sends the file to the Python reader instead. The end of the block
    # before is kept, to see such a line across blocks.
    tail = b"\n"
    with path.open("rb") as handle:
        while block := handle.read(COPY_BLOCK):
            seam = tail + block[:2]
            if any(b"\n\\." in part or b"\r\\." in part for part in (seam, block)):
                raise _InDoubt
            tail = block[-2:]
            if on_progress:
                on_progress(block.count(b"\n"))
            yield block
