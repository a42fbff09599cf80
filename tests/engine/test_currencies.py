"""Currencies (issue 11's case `mixed-currencies`, and more inputs of the kind): amounts are
converted to the tenant's reporting currency when imported, at the rate in force on the
order's date; an order without a rate is refused with its line."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.data import rates, rollups
from service.data.ingest import import_file, import_rates
from service.data.kinds import Kind
from service.data.readers import IngestError
from service.db import locks
from service.db.tables import customers, orders
from service.engine.templates import TEMPLATES
from service.errors import UserError
from tests.engine.test_orders import CASES, DOCS, _tiers, values, write


async def stored(engine: AsyncEngine, tenant: str) -> dict[str, tuple[Decimal, Decimal, str]]:
    """Each order's (amount, original_amount, currency) as stored."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                orders.c.external_id, orders.c.amount, orders.c.original_amount, orders.c.currency
            ).where(orders.c.tenant_id == tenant)
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def test_mixed_currencies_are_compared_in_one(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """The case: HANA's 2 × 3,000 JPY (about 40 USD) made her a VIP beside IVAN's 2 × 2,600
    USD. In a tenant reporting in USD, her orders are refused until a JPY rate is imported,
    then converted: IVAN is VIP, HANA is not."""
    case = CASES / "mixed-currencies" / "orders.csv"
    assert await rates.set_reporting_currency(engine, tenant, "usd") == "USD"
    with pytest.raises(IngestError) as refused:
        await import_file(engine, Kind.orders, tenant, case)
    message = str(refused.value)
    assert "orders.csv:4: currency: no exchange rate for JPY on 2026-02-20" in message
    assert "orders.csv:5: currency: no exchange rate for JPY on 2026-02-22" in message
    assert await stored(engine, tenant) == {}  # nothing written

    rate_file = write(tmp_path, "rates.csv", "currency,date,rate\nJPY,2026-01-01,0.0067\n")
    result = await import_rates(engine, tenant, rate_file)
    assert (result.inserted, result.updated, result.converted) == (1, 0, 0)
    await import_file(engine, Kind.orders, tenant, case)
    assert (await stored(engine, tenant))["Y1"] == (Decimal("20.1"), Decimal("3000"), "JPY")
    assert (await stored(engine, tenant))["U1"] == (Decimal("2600"), Decimal("2600"), "USD")
    got = await values(engine, tenant, "monetary(30 days)", "frequency(30 days)")
    assert got["HANA"] == {"monetary(30 days)": Decimal("40.2"), "frequency(30 days)": 2}
    tiers = await _tiers(engine, tenant, TEMPLATES["value"].check())
    assert tiers["IVAN"] == "VIP"
    assert tiers["HANA"] != "VIP"
    # `currency "JPY"`: the orders in yen, summed in yen.
    by_currency = await values(
        engine, tenant, 'monetary(currency "JPY")', 'frequency(currency "JPY", 30 days)'
    )
    assert by_currency["HANA"] == {
        'monetary(currency "JPY")': Decimal("6000"),
        'frequency(currency "JPY", 30 days)': 2,
    }
    assert by_currency["IVAN"]['monetary(currency "JPY")'] == 0


async def test_the_rate_in_force_on_the_orders_date_applies(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """A rate holds from its date (UTC) until the currency's next one; rates imported later
    convert the stored orders they now apply to again, rollups included; the same file twice
    changes nothing."""
    rate_file = write(
        tmp_path,
        "rates.csv",
        "currency,date,rate\nUSD,2026-01-01,0.9\nusd,2026-02-01,0.8\nGBP,2026-01-01,1.15\n",
    )
    await import_rates(engine, tenant, rate_file)
    again = await import_rates(engine, tenant, rate_file)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    order_file = write(
        tmp_path,
        "orders.csv",
        "order_id,customer_id,ordered_at,amount,currency\n"
        "A,ANN,2026-01-31T23:59:59Z,100,USD\n"  # the January rate
        "B,ANN,2026-02-01T00:30:00+01:00,100,USD\n"  # 2026-01-31 in UTC: January too
        "C,ANN,2026-02-01,100,usd\n"  # the February rate
        "D,ANN,2026-02-02,10.01,GBP\n"
        "E,ANN,2026-02-03,7,\n"  # no currency: the reporting currency
        "F,ANN,2026-02-04,-50,USD\n",  # a refund, converted as well
    )
    loaded = await import_file(engine, Kind.orders, tenant, order_file)
    assert loaded.bulk  # converted on the COPY path, in SQL
    got = await stored(engine, tenant)
    assert got == {
        "A": (Decimal("90"), Decimal("100"), "USD"),
        "B": (Decimal("90"), Decimal("100"), "USD"),
        "C": (Decimal("80"), Decimal("100"), "USD"),
        "D": (Decimal("11.5115"), Decimal("10.01"), "GBP"),
        "E": (Decimal("7"), Decimal("7"), "EUR"),
        "F": (Decimal("-40"), Decimal("-50"), "USD"),
    }
    assert (await values(engine, tenant, "monetary"))["ANN"]["monetary"] == Decimal("238.5115")

    # A rate from mid-January changes A's and B's; the rollups follow.
    later = write(tmp_path, "later.csv", "currency,date,rate\nUSD,2026-01-15,0.95\n")
    result = await import_rates(engine, tenant, later)
    assert result.converted == 2
    got = await stored(engine, tenant)
    assert got["A"][0] == got["B"][0] == Decimal("95")
    assert (await values(engine, tenant, "monetary"))["ANN"]["monetary"] == Decimal("248.5115")
    async with engine.connect() as connection:
        assert await rollups.drift(connection, tenant) == 0


async def test_orders_without_a_rate_are_set_aside_under_skip_bad(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """--skip-bad: the orders without a rate (none at all, or none yet on their date) go to
    the bad file with their error; the others land. A currency code that is no code is
    refused as such."""
    await import_rates(
        engine, tenant, write(tmp_path, "rates.csv", "currency,date,rate\nUSD,2026-02-01,0.8\n")
    )
    order_file = write(
        tmp_path,
        "orders.csv",
        "order_id,customer_id,ordered_at,amount,currency\n"
        "A,ANN,2026-02-10,100,USD\n"
        "B,ANN,2026-01-10,100,USD\n"  # before the first USD rate
        "C,ANN,2026-02-10,100,CHF\n"  # no CHF rate
        "D,ANN,2026-02-10,100,EURO\n",
    )
    with pytest.raises(IngestError) as refused:
        await import_file(engine, Kind.orders, tenant, order_file)
    message = str(refused.value)
    assert "orders.csv:3: currency: no exchange rate for USD on 2026-01-10" in message
    assert "orders.csv:4: currency: no exchange rate for CHF on 2026-02-10" in message
    assert "orders.csv:5: currency: 'EURO' is not an ISO 4217 currency code" in message

    bad = tmp_path / "bad.csv"
    result = await import_file(engine, Kind.orders, tenant, order_file, skip_bad_to=bad)
    assert (result.inserted, result.rejected) == (1, 3)
    assert set(await stored(engine, tenant)) == {"A"}
    assert "no exchange rate for CHF on 2026-02-10" in bad.read_text(encoding="utf-8")


async def test_bad_rates_are_refused_with_their_line(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    rate_file = write(
        tmp_path,
        "rates.csv",
        "currency,date,rate\nUSD,2026-02-01,0\nUSD,2026-02-30,1\nUSD,2026-03-01,1e400x\n",
    )
    with pytest.raises(IngestError) as refused:
        await import_rates(engine, tenant, rate_file)
    message = str(refused.value)
    assert "rates.csv:2: rate: 0 is not a positive rate" in message
    assert "rates.csv:3: date: '2026-02-30' is not an ISO 8601 date" in message
    assert "rates.csv:4: rate:" in message
    own = write(tmp_path, "own.csv", "currency,date,rate\nEUR,2026-02-01,1\n")
    with pytest.raises(UserError, match="EUR is the reporting currency"):
        await import_rates(engine, tenant, own)


async def test_the_reporting_currency_is_set_before_the_first_import(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    assert await rates.reporting_currency(engine, tenant) == "EUR"
    assert await rates.set_reporting_currency(engine, tenant, "CNY") == "CNY"
    with pytest.raises(UserError, match="ISO 4217"):
        await rates.set_reporting_currency(engine, tenant, "yuan")
    await import_file(
        engine,
        Kind.orders,
        tenant,
        write(tmp_path, "o.csv", "order_id,customer_id,ordered_at,amount\nA,ANN,2026-02-10,5\n"),
    )
    with pytest.raises(UserError, match="set before the first import"):
        await rates.set_reporting_currency(engine, tenant, "USD")
    assert await rates.set_reporting_currency(engine, tenant, "CNY") == "CNY"


async def test_the_currency_waits_for_a_first_import_in_progress(
    engine: AsyncEngine, tenant: str
) -> None:
    """A first import converting its orders into EUR has not committed when the currency is
    set to USD: the setting waits for the load and then refuses, where it read no orders and
    left EUR amounts in a USD tenant."""
    async with engine.begin() as load:
        await locks.acquire(load, locks.Purpose.ingest, tenant)  # as every load does
        await load.execute(
            insert(customers).values(tenant_id=tenant, external_id="ANN"),
        )
        ann = await load.scalar(select(customers.c.id).where(customers.c.tenant_id == tenant))
        await load.execute(
            insert(orders).values(
                tenant_id=tenant,
                external_id="A",
                customer_id=ann,
                ordered_at=dt.datetime(2026, 2, 10, tzinfo=dt.UTC),
                amount=Decimal(5),
            )
        )
        setting = asyncio.create_task(rates.set_reporting_currency(engine, tenant, "USD"))
        await asyncio.sleep(0.2)
    with pytest.raises(UserError, match="already has orders or rates in EUR"):
        await setting
    assert await rates.reporting_currency(engine, tenant) == "EUR"


async def test_the_documented_currencies_example_holds(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """docs/rules.md's example of currencies: its rates and orders give its table; the
    README shows its rates."""
    section = DOCS.read_text(encoding="utf-8").split("<!-- currencies-example", 1)[1]
    section = section.split("<!-- /currencies-example -->", 1)[0]
    rate_text, order_text = (block.split("```", 1)[0] for block in section.split("```csv\n")[1:])
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = {
        cells[0]: dict(zip(header[1:], cells[1:], strict=True))
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])
    }
    await rates.set_reporting_currency(engine, tenant, "USD")
    order_file = write(tmp_path, "orders.csv", order_text)
    with pytest.raises(IngestError, match=r"orders\.csv:4: currency: no exchange rate for JPY"):
        await import_file(engine, Kind.orders, tenant, order_file)
    await import_rates(engine, tenant, write(tmp_path, "rates.csv", rate_text))
    await import_file(engine, Kind.orders, tenant, order_file)
    got = await values(engine, tenant, *header[1:])
    assert {
        customer: {name: Decimal(str(value)) for name, value in metrics.items()}
        for customer, metrics in got.items()
    } == {
        customer: {name: Decimal(value) for name, value in row.items()}
        for customer, row in table.items()
    }
    readme = (DOCS.parents[1] / "README.md").read_text(encoding="utf-8")
    shown = readme.split("[docs/rules.md](docs/rules.md#currencies)", 1)[1]
    shown = shown.split("  ```csv\n", 1)[1].split("  ```", 1)[0]
    assert {line.strip() for line in shown.splitlines()} <= set(rate_text.splitlines())
