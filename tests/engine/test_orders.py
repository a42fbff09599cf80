"""Orders as shops have them: refunds, cancellations, ranks over buyers (issue 11's cases
`refund-not-a-purchase` and `rfm-non-buyers`, and more inputs of the same kinds)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl import CheckedScheme, check_text, compile_scheme
from dsl.compiler import metric_values_select
from service.access.audit import Actor
from service.data import rollups
from service.data.ingest import import_file, import_rows
from service.data.readers import IngestError
from service.data.records import Kind
from service.db.tables import customer_metrics, customers, orders
from service.engine import deletion, evaluation
from service.engine.predictions.purchases import purchases
from service.engine.sources import tenant_sources
from service.engine.templates import TEMPLATES
from tests.support import publish, tiers_of

CASES = Path(__file__).parent / "cases"
AS_OF = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


async def values(
    engine: AsyncEngine, tenant: str, *texts: str, as_of: dt.datetime = AS_OF
) -> dict[str, dict[str, Any]]:
    """Each customer's value of each metric (rule text), computed by the compiled SQL."""
    scheme = check_text(
        "scheme s {\n"
        + "\n".join(f"tier T{i} when {t} is null" for i, t in enumerate(texts))
        + "\n}\n"
    ).schemes[0]
    refs = list(scheme.refs)
    by_text = {ref.text: ref for ref in refs}
    async with engine.connect() as connection:
        rows = (
            await connection.execute(metric_values_select(refs, tenant_sources(tenant), as_of))
        ).all()
        names = dict(
            (
                await connection.execute(
                    select(customers.c.id, customers.c.external_id).where(
                        customers.c.tenant_id == tenant
                    )
                )
            ).all()
        )
    out = {}
    for row in rows:
        got = dict(zip(refs, row[1:], strict=True))
        out[names[row.customer_id]] = {t: got[by_text[_canonical(t)]] for t in texts}
    return out


def _canonical(text: str) -> str:
    return check_text(f"tier T when {text} is null").schemes[0].refs[0].text


async def _tiers(
    engine: AsyncEngine, tenant: str, scheme: CheckedScheme, as_of: dt.datetime = AS_OF
) -> dict[str, str | None]:
    statement = compile_scheme(scheme, tenant_sources(tenant), as_of).subquery()
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(customers.c.external_id, statement.c.tier).join(
                statement, statement.c.customer_id == customers.c.id
            )
        )
        return dict(rows.all())


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


async def load_orders(engine: AsyncEngine, tenant: str, rows: list[dict[str, str]]) -> None:
    await import_rows(engine, Kind.orders, tenant, enumerate(rows, 2), source="test")


# --- the metrics analysts ask for ---------------------------------------------------------------


async def test_largest_order_categories_and_days_between_purchases(
    engine: AsyncEngine, tenant: str
) -> None:
    """Purchases only: the cancelled order and the one refunded in full are none; a partial
    refund leaves its order's size as sold; an order without a category adds none."""

    def row(order: str, customer: str, day: str, amount: str, **more: str) -> dict[str, str]:
        fields = {"order_id": order, "customer_id": customer, "ordered_at": day}
        return fields | {"amount": amount} | more

    await load_orders(
        engine,
        tenant,
        [
            row("a1", "ann", "2026-01-01", "100", category="books"),
            row("a2", "ann", "2026-01-11", "300", category="toys"),
            row("a2r", "ann", "2026-01-12", "-50", refund_of="a2"),
            row("a3", "ann", "2026-01-20", "900", category="games", status="cancelled"),
            row("a4", "ann", "2026-01-21", "700", category="garden"),
            row("a4r", "ann", "2026-01-22", "-700", refund_of="a4"),
            row("a5", "ann", "2026-02-06", "200"),
            row("b1", "bob", "2026-02-20", "40", category="books"),
            row("c1", "cy", "2026-02-01", "10"),
            row("c2", "cy", "2026-02-02", "10"),
            row("c3", "cy", "2026-02-02", "10"),
            row("c4", "cy", "2026-02-02", "10"),
        ],
    )
    got = await values(
        engine,
        tenant,
        "largest_order",
        "categories",
        "purchase_interval",
        "days_since_first_purchase",
        "largest_order(30 days)",
    )
    assert got["ann"] == {
        "largest_order": Decimal("300"),
        "categories": 2,  # books and toys: games was cancelled, garden refunded in full
        "purchase_interval": Decimal("18"),  # 36 days from Jan 1 to Feb 6, over 2 gaps
        "days_since_first_purchase": 59,
        "largest_order(30 days)": Decimal("200"),
    }
    assert got["bob"] == {
        "largest_order": Decimal("40"),
        "categories": 1,
        "purchase_interval": None,  # one purchase: no gap between purchases
        "days_since_first_purchase": 9,
        "largest_order(30 days)": Decimal("40"),
    }
    # 1 day over 3 gaps: an exact decimal, never the binary float 0.3333 Postgres would give
    # for sign() of an integer.
    interval = got["cy"]["purchase_interval"]
    assert isinstance(interval, Decimal) and interval == Decimal("0.3333")


# --- refund-not-a-purchase -------------------------------------------------------------------


async def test_a_refund_row_is_not_a_purchase(engine: AsyncEngine, tenant: str) -> None:
    """The case: one purchase of 5,200 and a -100 refund row made DORA a VIP of the value
    template ("at least 2 purchases a month"). She made one purchase and spent 5,100 net."""
    await import_file(engine, Kind.orders, tenant, CASES / "refund-not-a-purchase" / "orders.csv")
    got = await values(
        engine, tenant, "frequency", "monetary", "refunds", "returns", "refund_rate", "recency"
    )
    assert got["DORA"] == {
        "frequency": 1,
        "monetary": Decimal("5100"),
        "refunds": Decimal("100"),
        "returns": 1,
        "refund_rate": Decimal("0.0192"),  # 100 / 5200, rounded half away from zero
        "recency": 9,  # the purchase of 2026-02-20, not the refund of 02-22
    }
    assert (await _tiers(engine, tenant, TEMPLATES["value"].check()))["DORA"] != "VIP"


async def test_refunds_cancellations_and_links(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """More of the kind: a cancelled order counts nowhere; a refund linked to its order
    (`refund_of`, given with either sign) lowers the net amount, and one that covers the
    order makes it no purchase; a status column in any case."""
    path = write(
        tmp_path,
        "orders.csv",
        "order_id,customer_id,ordered_at,amount,status,refund_of\n"
        "A1,ANN,2026-02-01,300,completed,\n"
        "A2,ANN,2026-02-10,200,Completed,\n"
        "A2R,ANN,2026-02-12,200,,A2\n"  # a full refund of A2, written positive
        "A3,ANN,2026-02-20,900,cancelled,\n"
        "B1,BEN,2026-02-25,80,,\n"
        "B1R,BEN,2026-02-26,-30,,B1\n"  # a partial refund: B1 stays a purchase
        "C1,CAT,2026-02-01,50,,\n"
        "C1R,CAT,2026-02-02,-50,,C1\n"  # refunded in full: CAT never bought
        "C1R2,CAT,2026-03-05,-1,,\n",  # after the evaluation time: not counted
    )
    await import_file(engine, Kind.orders, tenant, path)
    got = await values(
        engine,
        tenant,
        "frequency",
        "monetary",
        "refunds",
        "returns",
        "recency",
        "average_order_value",
        "last_purchase",
    )
    assert got["ANN"] == {
        "frequency": 1,
        "monetary": Decimal("300"),
        "refunds": Decimal("200"),
        "returns": 1,
        "recency": 28,  # A1: A2 was refunded in full, A3 cancelled
        "average_order_value": Decimal("300"),
        "last_purchase": dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
    }
    assert got["BEN"]["frequency"] == 1 and got["BEN"]["monetary"] == Decimal("50")
    assert got["CAT"] == {
        "frequency": 0,
        "monetary": Decimal("0"),
        "refunds": Decimal("50"),
        "returns": 1,
        "recency": None,
        "average_order_value": None,
        "last_purchase": None,
    }
    async with engine.connect() as connection:
        stored = dict(
            (
                await connection.execute(
                    select(orders.c.external_id, orders.c.amount).where(
                        orders.c.tenant_id == tenant, orders.c.external_id == "A2R"
                    )
                )
            ).all()
        )
        assert stored == {"A2R": Decimal("-200")}  # stored negative
        # The rollups count purchases and net amounts too, and agree with a recomputation.
        kept = {
            row.customer_id: (row.order_count, row.order_total)
            for row in await connection.execute(
                select(customer_metrics).where(customer_metrics.c.tenant_id == tenant)
            )
        }
        assert sorted(kept.values()) == sorted(
            [(1, Decimal("300")), (1, Decimal("50")), (0, Decimal("-1"))]
        )
        assert await rollups.drift(connection, tenant) == 0


async def test_a_refund_that_arrives_later_moves_the_tier(engine: AsyncEngine, tenant: str) -> None:
    """Incremental updates follow refunds: the refund of a VIP's second order, and the order
    named by a refund stored before it, update tiers and rollups at once."""
    now = dt.datetime.now(dt.UTC)

    def row(order_id: str, days_ago: int, amount: str, **extra: str) -> dict[str, str]:
        at = (now - dt.timedelta(days=days_ago)).isoformat()
        return {
            "order_id": order_id,
            "customer_id": "V",
            "ordered_at": at,
            "amount": amount,
        } | extra

    await publish(
        engine,
        tenant,
        'scheme value "V" {\n tier VIP when frequency >= 2\n tier Other otherwise\n}\n',
    )
    after = {"after_load": evaluation.refresh_affected}
    await import_rows(
        engine,
        Kind.orders,
        tenant,
        enumerate([row("v1", 5, "10"), row("v2", 4, "10")], 2),
        source="test",
        **after,
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"V": "VIP"}
    await import_rows(
        engine,
        Kind.orders,
        tenant,
        enumerate([row("v2r", 3, "-10", refund_of="v2")], 2),
        source="test",
        **after,
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"V": "Other"}
        assert await rollups.drift(connection, tenant) == 0
    # A refund of an order not yet known, then the order: still one purchase.
    await import_rows(
        engine,
        Kind.orders,
        tenant,
        enumerate([row("v3r", 1, "-10", refund_of="v3")], 2),
        source="test",
        **after,
    )
    await import_rows(
        engine, Kind.orders, tenant, enumerate([row("v3", 2, "10")], 2), source="test", **after
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"V": "Other"}
        assert await rollups.drift(connection, tenant) == 0
    # Deleting the refund makes v2 a purchase again.
    await deletion.delete_facts(
        engine, tenant, Kind.orders, ["v2r"], actor=Actor("test", "admin", "cli")
    )
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"V": "VIP"}
        assert await rollups.drift(connection, tenant) == 0


async def test_an_unknown_status_is_refused_with_its_line(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "orders.jsonl",
        json.dumps(
            {
                "order_id": "1",
                "customer_id": "a",
                "ordered_at": "2026-01-01",
                "amount": 5,
                "status": "completed",
            }
        )
        + "\n"
        + json.dumps(
            {
                "order_id": "2",
                "customer_id": "a",
                "ordered_at": "2026-01-02",
                "amount": 5,
                "status": "refunded",
            }
        )
        + "\n",
    )
    with pytest.raises(IngestError) as error:
        await import_file(engine, Kind.orders, tenant, path)
    message = str(error.value)
    assert (
        "orders.jsonl:2: status: 'refunded' is not an order status (completed or cancelled)"
        in message
    )
    assert "refund_of" in message


async def test_the_models_count_purchases_as_frequency_does(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "orders.csv",
        "order_id,customer_id,ordered_at,amount,status,refund_of\n"
        "A1,ANN,2026-02-01,300,,\n"
        "A1R,ANN,2026-02-03,-100,,A1\n"
        "A2,ANN,2026-02-10,200,,\n"
        "A2R,ANN,2026-02-12,-200,,A2\n"
        "A3,ANN,2026-02-20,900,cancelled,\n"
        "A4,ANN,2026-02-21,-40,,\n",
    )
    await import_file(engine, Kind.orders, tenant, path)
    bought = purchases(tenant, before=AS_OF)
    async with engine.connect() as connection:
        rows = (await connection.execute(select(bought.c.ordered_at, bought.c.net_amount))).all()
    assert [(r.ordered_at.date().isoformat(), r.net_amount) for r in rows] == [
        ("2026-02-01", Decimal("200"))
    ]


# --- rfm-non-buyers --------------------------------------------------------------------------


async def test_scores_of_order_metrics_rank_buyers_only(engine: AsyncEngine, tenant: str) -> None:
    """The case: three prospects who never ordered turned B1, a one-time buyer of two days
    ago, into a Champion. B1 is New and B2 a Champion."""
    case = CASES / "rfm-non-buyers"
    await import_file(engine, Kind.customers, tenant, case / "customers.csv")
    await import_file(engine, Kind.orders, tenant, case / "orders.csv")
    placed = await _tiers(engine, tenant, TEMPLATES["rfm"].check())
    assert placed == {"B1": "New", "B2": "Champions", "P1": None, "P2": None, "P3": None}
    got = await values(
        engine,
        tenant,
        "f_score",
        "m_score",
        "percentile(frequency)",
        "percentile(monetary(30 days))",
        "cumulative_share(monetary)",
    )
    assert got["B1"] == {
        "f_score": 3,
        "m_score": 3,
        "percentile(frequency)": 50,
        "percentile(monetary(30 days))": 50,  # 20 each in the last 30 days
        "cumulative_share(monetary)": 100,
    }
    assert got["P1"] == dict.fromkeys(got["P1"])  # no ranks of spend for who never bought


async def test_ranks_stay_in_range_when_net_amounts_are_negative(
    engine: AsyncEngine, tenant: str
) -> None:
    await load_orders(
        engine,
        tenant,
        [
            {"order_id": "1", "customer_id": "a", "ordered_at": "2026-02-01", "amount": "100"},
            {"order_id": "2", "customer_id": "b", "ordered_at": "2026-02-01", "amount": "50"},
            {"order_id": "3", "customer_id": "b", "ordered_at": "2026-02-02", "amount": "-120"},
            {"order_id": "4", "customer_id": "c", "ordered_at": "2026-02-01", "amount": "0"},
        ],
    )
    got = await values(
        engine, tenant, "monetary", "cumulative_share(monetary)", "percentile(monetary)", "m_score"
    )
    assert {k: v["monetary"] for k, v in got.items()} == {
        "a": Decimal("100"),
        "b": Decimal("-70"),
        "c": Decimal("0"),
    }
    # Shares of the positive total: a holds all of it; those at 0 or below get 100.
    assert {k: v["cumulative_share(monetary)"] for k, v in got.items()} == {
        "a": 100,
        "b": 100,
        "c": 100,
    }
    assert {k: v["percentile(monetary)"] for k, v in got.items()} == {"a": 100, "b": 34, "c": 67}
    assert {k: v["m_score"] for k, v in got.items()} == {"a": 5, "b": 2, "c": 4}


# --- docs/rules.md ---------------------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "rules.md"


async def test_the_documented_refunds_example_holds(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    """docs/rules.md's example of refunds and cancellations: its orders give its table."""
    section = DOCS.read_text(encoding="utf-8").split("<!-- refunds-example", 1)[1]
    section = section.split("<!-- /refunds-example -->", 1)[0]
    csv_text = section.split("```csv\n", 1)[1].split("```", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = {
        cells[0]: dict(zip(header[1:], cells[1:], strict=True))
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])
    }
    await import_file(engine, Kind.orders, tenant, write(tmp_path, "orders.csv", csv_text))
    got = await values(engine, tenant, *header[1:])
    assert {
        customer: {name: Decimal(str(value)) for name, value in metrics.items()}
        for customer, metrics in got.items()
    } == {
        customer: {name: Decimal(value) for name, value in row.items()}
        for customer, row in table.items()
    }
    # The README shows ANN's part of the same example.
    readme = (DOCS.parents[1] / "README.md").read_text(encoding="utf-8")
    shown = readme.split("  ```csv\n", 1)[1].split("  ```", 1)[0]
    assert {line.strip() for line in shown.splitlines()} <= set(csv_text.splitlines())
