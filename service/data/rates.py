"""Currencies: a tenant's reporting currency and exchange rates, and how an order's amount is
converted to it.

Amounts are converted once, when an order is imported: `orders.amount` holds the amount in the
tenant's reporting currency, `original_amount` and `currency` the order's own. Every metric,
rollup and model then sums one column in one currency, as before currencies (one definition of
each metric, in dsl/catalog.py), and a bulk load stays one set-based statement. The rate that
applies is the one in force on the order's date (UTC): of the currency's rates, the one with
the latest `valid_from` on or before it. The converted amount is `original_amount × rate`
rounded half away from zero to 4 decimals (Postgres `round`). Importing rates converts the
stored orders their rates now apply to again (service/data/ingest.py, `import_rates`).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.data.records import (
    CURRENCY,
    MAX_AMOUNT,
    MAX_FRACTION_DIGITS,
    FieldError,
    check_tenant_id,
)
from service.db import locks
from service.db.database import tenant_transaction
from service.errors import UserError

DEFAULT_CURRENCY = "EUR"

# The rates of one load: the tenant's, as ranges of days, staged once (`Rates.stage`) for the
# statements that convert orders to join, with the reporting currency bound as a parameter.
# Not subqueries on `tenants` and `exchange_rates` per row: in a statement over the
# coordinator's staging table Citus refuses them ("direct joins between distributed and local
# tables are not supported"), which sent every orders CSV to the Python reader.
RATES_TABLE = "load_rates"  # not stage_rates: the stage of a rates import

# Kept by the connection and emptied at each commit, as ingest's other temporary tables
# (service/data/ingest.py); empty for a tenant without rates.
CREATE_RATES = (
    f"CREATE TEMP TABLE IF NOT EXISTS {RATES_TABLE} (currency text, valid_from date, "
    "valid_until date, rate numeric, PRIMARY KEY (currency, valid_from)) ON COMMIT DELETE ROWS"
)

# Joined to a row `s` with `currency` (NULL: the reporting currency) and `ordered_at`: the
# currency's rate in force on the order's date (UTC) as `r.rate`, NULL when there is none.
RATE_JOIN = f"""LEFT JOIN {RATES_TABLE} r ON r.currency = {{s}}.currency
    AND r.valid_from <= ({{s}}.ordered_at AT TIME ZONE 'UTC')::date
    AND (r.valid_until IS NULL OR ({{s}}.ordered_at AT TIME ZONE 'UTC')::date < r.valid_until)"""

# The rate of the row joined with `RATE_JOIN`; `:reporting` is the reporting currency, bound
# once per statement.
RATE_SQL = (
    "(CASE WHEN coalesce({s}.currency, :reporting) = :reporting THEN 1::numeric ELSE r.rate END)"
)


def converted_sql(amount: str, s: str = "s") -> str:
    """SQL: ``amount`` (an expression in the order's currency) in the reporting currency, of
    a row joined with `RATE_JOIN`."""
    return f"round({amount} * {RATE_SQL.format(s=s)}, {MAX_FRACTION_DIGITS})"


_STEP = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)


@dataclass
class Rates:
    """A tenant's reporting currency and rates, read once per load to check rows in Python,
    and staged for the SQL above that converts them (`stage`)."""

    currency: str = DEFAULT_CURRENCY
    _days: dict[str, list[dt.date]] = field(default_factory=lambda: defaultdict(list))
    _rates: dict[str, list[Decimal]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    async def load(cls, connection: AsyncConnection, tenant: str) -> Rates:
        # The currency and the rates in one round trip (a one-order load makes few), joined on
        # the tenant (on Citus: on one node). No row: a tenant not stored yet.
        rows = await connection.execute(
            text(
                "SELECT t.currency AS reporting, r.currency, r.valid_from, r.rate"
                " FROM tenants t LEFT JOIN exchange_rates r ON r.tenant_id = t.id"
                " WHERE t.id = :t ORDER BY r.currency, r.valid_from"
            ),
            {"t": tenant},
        )
        found = rows.all()
        rates = cls((found[0].reporting if found else None) or DEFAULT_CURRENCY)
        for _, currency, valid_from, rate in found:
            if currency is not None:
                rates._days[currency].append(valid_from)
                rates._rates[currency].append(rate)
        return rates

    async def stage(
        self,
        connection: AsyncConnection,
        *,
        created: bool = False,
        currencies: Collection[str] | None = None,
    ) -> None:
        """Write these rates (only those of ``currencies``, if given) into the load's
        `RATES_TABLE` (made with `CREATE_RATES`, here unless ``created`` by the caller in this
        transaction; then what it holds is kept), each valid until the currency's next (NULL:
        the last; exact: numeric, copied as Decimal)."""
        if not created:
            await connection.execute(text(CREATE_RATES))
            await connection.execute(text(f"DELETE FROM {RATES_TABLE}"))
        records = [
            (currency, day, until, rate)
            for currency, days in self._days.items()
            if currencies is None or currency in currencies
            for day, until, rate in zip(days, [*days[1:], None], self._rates[currency], strict=True)
        ]
        if records:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None, "an open connection has a driver connection"
            await driver.copy_records_to_table(RATES_TABLE, records=records)

    @property
    def currencies(self) -> list[str]:
        """The currencies with rates (the reporting currency needs none)."""
        return list(self._days)

    def rate(self, currency: str | None, at: dt.datetime) -> Decimal | None:
        """The rate in force for ``currency`` at ``at`` (1 for the reporting currency)."""
        if currency is None or currency == self.currency:
            return Decimal(1)
        days = self._days.get(currency, [])
        index = bisect.bisect_right(days, at.astimezone(dt.UTC).date())
        return self._rates[currency][index - 1] if index else None

    def problem(self, currency: str | None, at: dt.datetime, amount: Decimal) -> str | None:
        """Why an order cannot be converted, or None."""
        rate = self.rate(currency, at)
        day = at.astimezone(dt.UTC).date().isoformat()
        if rate is None:
            return (
                f"no exchange rate for {currency} on {day} to the reporting currency "
                f"{self.currency}; import one with `tierwise import rates FILE` "
                "(currency,date,rate)"
            )
        converted = (amount * rate).quantize(_STEP, rounding=ROUND_HALF_UP)
        if abs(converted) >= MAX_AMOUNT:
            return f"{amount} {currency} is too large in {self.currency} ({converted})"
        return None


async def reporting_currency(engine: AsyncEngine, tenant: str) -> str:
    """The tenant's reporting currency (EUR for a tenant not stored yet)."""
    async with tenant_transaction(engine, tenant) as connection:
        return (await Rates.load(connection, tenant)).currency


async def set_reporting_currency(engine: AsyncEngine, tenant: str, code: str) -> str:
    """Set the tenant's reporting currency; refused once it has orders or rates, which are
    in the one it has (converting them would need rates between the two). Waits for a load
    of the tenant's in progress, and then sees its rows."""
    try:
        check_tenant_id(tenant)
        currency = str(CURRENCY.parse(code))
    except FieldError as error:
        raise UserError(str(error)) from None
    async with tenant_transaction(engine, tenant) as connection:
        # The loads' lock: a first import still running has converted its orders into the
        # current currency, and its rows are not yet visible to the check below.
        await locks.acquire(connection, locks.Purpose.ingest, tenant)
        stored = await connection.execute(
            text(
                "SELECT EXISTS (SELECT FROM orders WHERE tenant_id = :t)"
                " OR EXISTS (SELECT FROM exchange_rates WHERE tenant_id = :t)"
            ),
            {"t": tenant},
        )
        current = (await Rates.load(connection, tenant)).currency
        if current != currency and stored.scalar_one():
            raise UserError(
                f"tenant {tenant!r} already has orders or rates in {current}: its reporting "
                "currency is set before the first import"
            )
        await connection.execute(
            text(
                "INSERT INTO tenants (id, name, currency) VALUES (:t, :t, :c)"
                " ON CONFLICT (id) DO UPDATE SET currency = EXCLUDED.currency"
            ),
            {"t": tenant, "c": currency},
        )
    return currency
