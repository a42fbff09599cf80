"""The demo-data generator: deterministic, self-consistent, streaming, and shaped like a shop."""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.data.demo_data import (
    CUSTOMER_FIELDS,
    EVENT_FIELDS,
    ORDER_FIELDS,
    DemoConfig,
    customer_rows,
    event_rows,
    order_rows,
    rate_rows,
    write_all,
    write_csv,
)

END = datetime(2026, 1, 1, tzinfo=UTC)
Rows = list[dict[str, str]]


def parse_ts(text: str) -> datetime:
    """As an importer reads it: Z means UTC, a bare date means midnight UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def generate(config: DemoConfig) -> tuple[Rows, Rows, Rows]:
    return list(customer_rows(config)), list(order_rows(config)), list(event_rows(config))


@pytest.fixture(scope="module")
def data() -> tuple[DemoConfig, Rows, Rows, Rows]:
    # Large enough that the shape claims are far outside sampling noise, small enough to be quick.
    config = DemoConfig(customers=5_000, seed=7, end=END)
    return (config, *generate(config))


def check_consistent(config: DemoConfig, customers: Rows, orders: Rows, events: Rows) -> None:
    # The generator counts whole seconds: its window may start up to 1.5 s before this one
    # (the end floored to a second, the length rounded to one).
    start = config.end - timedelta(days=365.25 * config.years) - timedelta(seconds=1.5)
    registered = {c["customer_id"]: c["registered_at"] for c in customers}
    assert len(registered) == len(customers) == config.customers
    assert len({o["order_id"] for o in orders}) == len(orders)
    assert len({e["event_id"] for e in events}) == len(events)
    for row, field in [(o, "ordered_at") for o in orders] + [(e, "occurred_at") for e in events]:
        at = parse_ts(row[field])
        assert start <= at < config.end, row
        signed_up = registered[row["customer_id"]]  # KeyError: unknown customer
        assert not signed_up or at >= parse_ts(signed_up), (row, signed_up)
    for c in customers:
        if c["registered_at"]:
            assert start <= parse_ts(c["registered_at"]) < config.end, c


# --- API and determinism ---------------------------------------------------------------------


def test_rows_have_exactly_the_canonical_fields_as_strings(
    data: tuple[DemoConfig, Rows, Rows, Rows],
) -> None:
    _, customers, orders, events = data
    for rows, fields in (
        (customers, CUSTOMER_FIELDS),
        (orders, ORDER_FIELDS),
        (events, EVENT_FIELDS),
    ):
        assert rows
        for row in rows[:500]:
            assert tuple(row) == fields
            assert all(isinstance(v, str) for v in row.values())


def test_same_seed_same_rows_different_seed_different_rows() -> None:
    config = DemoConfig(customers=300, seed=1, end=END)
    assert generate(config) == generate(DemoConfig(customers=300, seed=1, end=END))
    other = generate(DemoConfig(customers=300, seed=2, end=END))
    for mine, theirs in zip(generate(config), other, strict=True):
        assert mine != theirs


def test_each_stream_is_independent_and_a_smaller_demo_is_a_prefix() -> None:
    small, large = DemoConfig(customers=50, end=END), DemoConfig(customers=120, end=END)
    # Interleaving the generators must not change what any of them yields.
    interleaved = list(
        zip(order_rows(small), event_rows(small), customer_rows(small), strict=False)
    )
    assert [o for o, _, _ in interleaved] == list(order_rows(small))[: len(interleaved)]
    for rows in (customer_rows, order_rows, event_rows):
        head = list(rows(small))
        assert list(rows(large))[: len(head)] == head


def test_end_is_normalised_to_utc_and_validated() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert DemoConfig(end=datetime(2026, 1, 1, 8, tzinfo=shanghai)).end == END
    assert DemoConfig(end=datetime(2026, 1, 1, 8, tzinfo=shanghai)).end.tzinfo is UTC
    default = DemoConfig().end
    assert default.tzinfo is UTC and default.time() == datetime.min.time()
    with pytest.raises(ValueError, match="timezone"):
        DemoConfig(end=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        DemoConfig(customers=-1)
    with pytest.raises(ValueError):
        DemoConfig(years=0)


def test_generators_stream_a_million_customers_lazily() -> None:
    config = DemoConfig(customers=1_000_000, end=END)
    for rows in (customer_rows(config), order_rows(config), event_rows(config)):
        assert iter(rows) is rows  # an iterator, not a materialised list
        assert len(list(itertools.islice(rows, 1_000))) == 1_000


# --- consistency -----------------------------------------------------------------------------


def test_some_orders_are_cancelled_and_some_refunded(
    data: tuple[DemoConfig, Rows, Rows, Rows],
) -> None:
    """Every view shows refunds and cancellations handled: about 2 % of orders cancelled and
    4 % refunded, each refund a negative row after its order, naming it, of the same customer
    and at most its amount."""
    _, _, orders, _ = data
    by_id = {o["order_id"]: o for o in orders}
    refunds = [o for o in orders if o["refund_of"]]
    sales = [o for o in orders if not o["refund_of"]]
    cancelled = [o for o in sales if o["status"] == "cancelled"]
    assert {o["status"] for o in orders} == {"completed", "cancelled"}
    assert 0.01 <= len(cancelled) / len(sales) <= 0.03
    assert 0.025 <= len(refunds) / len(sales) <= 0.05
    full = 0
    for refund in refunds:
        order = by_id[refund["refund_of"]]
        assert refund["customer_id"] == order["customer_id"]
        assert parse_ts(refund["ordered_at"]) > parse_ts(order["ordered_at"])
        assert Decimal(refund["amount"]) < 0
        assert -Decimal(refund["amount"]) <= Decimal(order["amount"])
        full += -Decimal(refund["amount"]) == Decimal(order["amount"])
    assert 0.2 <= full / len(refunds) <= 0.45


def test_orders_and_events_agree_with_customers(
    data: tuple[DemoConfig, Rows, Rows, Rows],
) -> None:
    check_consistent(*data)
    _, customers, _, _ = data
    # The edge cases the rule above must cover actually occur.
    assert any(not c["registered_at"] for c in customers)
    assert any(len(c["registered_at"]) == 10 for c in customers)  # date only


@settings(max_examples=40, deadline=None)
@given(
    customers=st.integers(0, 25),
    seed=st.integers(-(2**70), 2**70),
    years=st.floats(0.01, 6.0),
    end=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2040, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5))]
        ),
    ),
)
# Found by CI: a sub-second end and a length rounded up put a registration 1.000001 s early.
@example(customers=1, seed=0, years=0.078125, end=datetime(2000, 1, 1, 0, 0, 0, 500001, tzinfo=UTC))
def test_consistent_for_any_config(customers: int, seed: int, years: float, end: datetime) -> None:
    config = DemoConfig(customers=customers, seed=seed, end=end, years=years)
    check_consistent(config, *generate(config))


def test_values_parse_as_an_importer_reads_them(
    data: tuple[DemoConfig, Rows, Rows, Rows],
) -> None:
    config, customers, orders, events = data
    for c in customers:
        assert c["customer_id"].startswith("C")
        assert 18 <= int(c["age"]) <= 80
        assert c["gender"] in {"female", "male", "other"}
        assert c["region"] in {"north", "south", "east", "west", "central"}
        assert c["company_size"] == "" or int(c["company_size"]) >= 1
        assert "@" in c["email"] and c["phone"].startswith("+86")
        assert c["name"] and c["occupation"] and c["industry"]
        assert isinstance(json.loads(c["attributes"]), dict)
    assert any(c["company_size"] for c in customers)
    assert any(c["attributes"] == "{}" for c in customers)
    for o in orders:
        amount = Decimal(o["amount"])
        assert (amount < 0) == bool(o["refund_of"]) and amount.as_tuple().exponent == -2
        assert o["currency"] in {"CNY", "USD"}
        assert o["category"] in {
            "electronics", "apparel", "home", "beauty", "food", "books", "sports",
        }  # fmt: skip
        assert o["channel"] in {"web", "app", "store", "phone"}
        parse_ts(o["ordered_at"])
    # A customer pays in one currency; about FOREIGN_SHARE of the buyers pay in dollars, and
    # every order's month has a dollar rate.
    paying: dict[str, set[str]] = {}
    for o in orders:
        paying.setdefault(o["customer_id"], set()).add(o["currency"])
    assert all(len(currencies) == 1 for currencies in paying.values())
    abroad = sum(currencies == {"USD"} for currencies in paying.values()) / len(paying)
    assert 0.02 < abroad < 0.09
    months = {row["date"][:7] for row in rate_rows(config)}
    assert {o["ordered_at"][:7] for o in orders} <= months
    for e in events:
        assert e["type"] in {"login", "page_view", "support_contact", "complaint", "nps"}
        assert isinstance(json.loads(e["properties"]), dict)
        if e["type"] == "nps":
            assert 0 <= int(e["value"]) <= 10
        else:
            assert e["value"] == ""
        assert e["occurred_at"].endswith("Z")
        parse_ts(e["occurred_at"])


# --- shape -----------------------------------------------------------------------------------


class Stats:
    def __init__(self, config: DemoConfig, customers: Rows, orders: Rows, events: Rows) -> None:
        self.end = config.end
        self.n = len(customers)
        self.customers = customers
        self.orders: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
        for o in orders:
            self.orders[o["customer_id"]].append((parse_ts(o["ordered_at"]), Decimal(o["amount"])))
        self.events: dict[str, Counter[str]] = defaultdict(Counter)
        self.nps: dict[str, list[int]] = defaultdict(list)
        for e in events:
            self.events[e["customer_id"]][e["type"]] += 1
            if e["type"] == "nps":
                self.nps[e["customer_id"]].append(int(e["value"]))

    def last_order(self, customer_id: str) -> datetime:
        return max(at for at, _ in self.orders[customer_id])

    def churned(self) -> set[str]:
        cutoff = self.end - timedelta(days=180)
        return {c for c in self.orders if self.last_order(c) < cutoff}

    def recent(self) -> set[str]:
        return {c for c in self.orders if self.last_order(c) >= self.end - timedelta(days=90)}


@pytest.fixture(scope="module")
def stats(data: tuple[DemoConfig, Rows, Rows, Rows]) -> Stats:
    return Stats(*data)


def test_about_ten_orders_and_a_few_events_per_customer(
    data: tuple[DemoConfig, Rows, Rows, Rows],
) -> None:
    config, _, orders, events = data
    assert 8 <= len(orders) / config.customers <= 12
    assert 4 <= len(events) / config.customers <= 12


def test_some_prospects_never_buy(stats: Stats) -> None:
    share = sum(1 for c in stats.customers if c["customer_id"] not in stats.orders) / stats.n
    assert 0.06 <= share <= 0.16


def test_some_customers_churned_long_ago(stats: Stats) -> None:
    assert 0.15 <= len(stats.churned()) / stats.n <= 0.40


def test_new_customers_have_at_most_one_order(stats: Stats) -> None:
    new = [
        c["customer_id"]
        for c in stats.customers
        if c["registered_at"] and parse_ts(c["registered_at"]) >= stats.end - timedelta(days=60)
    ]
    assert 0.025 <= len(new) / stats.n <= 0.08
    assert all(len(stats.orders.get(c, [])) <= 1 for c in new)
    # "Registered less than 30 days ago with exactly one purchase" must find someone.
    assert any(
        len(stats.orders.get(c["customer_id"], [])) == 1
        and parse_ts(c["registered_at"]) >= stats.end - timedelta(days=30)
        for c in stats.customers
        if c["registered_at"]
    )


def test_revenue_is_concentrated_in_the_top_fifth(stats: Stats) -> None:
    revenue = sorted(
        (sum((a for _, a in stats.orders.get(c["customer_id"], [])), Decimal(0))
         for c in stats.customers),
        reverse=True,
    )  # fmt: skip
    top_share = sum(revenue[: stats.n // 5]) / sum(revenue)
    assert 0.6 <= top_share <= 0.92


def test_order_values_are_right_skewed(data: tuple[DemoConfig, Rows, Rows, Rows]) -> None:
    amounts = [float(o["amount"]) for o in data[2]]
    assert statistics.mean(amounts) > 1.3 * statistics.median(amounts)


def test_a_few_vips_spend_over_5000_a_month_in_two_or_more_orders(stats: Stats) -> None:
    month_ago = stats.end - timedelta(days=30)
    vips = 0
    for orders in stats.orders.values():
        recent = [amount for at, amount in orders if at >= month_ago]
        vips += len(recent) >= 2 and sum(recent) > 5000
    assert 0.002 <= vips / stats.n <= 0.03


def test_orders_peak_in_november_december_and_june(
    data: tuple[DemoConfig, Rows, Rows, Rows],
) -> None:
    # Whole years only, so a growing customer base does not masquerade as seasonality.
    per_month = Counter(
        parse_ts(o["ordered_at"]).month for o in data[2] if o["ordered_at"] >= "2023"
    )
    baseline = statistics.mean(per_month[m] for m in (2, 3, 4, 5, 7, 8, 9))
    assert per_month[11] > 1.4 * baseline
    assert per_month[12] > 1.3 * baseline
    assert per_month[6] > 1.15 * max(per_month[5], per_month[7])


def test_complaints_and_low_nps_go_with_churn(stats: Stats) -> None:
    churned, recent = stats.churned(), stats.recent()

    def complaints_per_customer(ids: set[str]) -> float:
        return sum(stats.events[c]["complaint"] for c in ids) / len(ids)

    def mean_nps(ids: set[str]) -> float:
        return statistics.mean(s for c in ids for s in stats.nps.get(c, []))

    assert complaints_per_customer(churned) > 1.5 * complaints_per_customer(recent)
    assert mean_nps(churned) < mean_nps(recent) - 1.0
    # Detractors (NPS 0-6) complain more than promoters (9-10).
    detractors = {c for c, s in stats.nps.items() if statistics.mean(s) <= 6}
    promoters = {c for c, s in stats.nps.items() if statistics.mean(s) >= 9}
    assert complaints_per_customer(detractors) > 2 * complaints_per_customer(promoters)


# --- files -----------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    config = DemoConfig(customers=200, end=END)
    for name, rows, fields in (
        ("customers.csv", customer_rows, CUSTOMER_FIELDS),
        ("orders.csv", order_rows, ORDER_FIELDS),
        ("events.csv", event_rows, EVENT_FIELDS),
    ):
        path = tmp_path / "nested" / name
        expected = list(rows(config))
        assert write_csv(rows(config), path, fields) == len(expected)
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames or ()) == fields
            assert list(reader) == expected
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == [
        "customers.csv", "events.csv", "orders.csv",
    ]  # fmt: skip


def test_write_all_counts_rows(tmp_path: Path) -> None:
    config = DemoConfig(customers=30, end=END)
    counts = write_all(config, tmp_path)
    assert counts == {
        "rates": sum(1 for _ in rate_rows(config)),
        "customers": 30,
        "orders": sum(1 for _ in order_rows(config)),
        "events": sum(1 for _ in event_rows(config)),
    }


def test_interrupted_write_leaves_no_file(tmp_path: Path) -> None:
    def failing() -> Iterator[dict[str, str]]:
        yield from itertools.islice(order_rows(DemoConfig(customers=5, end=END)), 3)
        raise RuntimeError("source died")

    path = tmp_path / "orders.csv"
    with pytest.raises(RuntimeError):
        write_csv(failing(), path, ORDER_FIELDS)
    assert list(tmp_path.iterdir()) == []


def test_rows_that_do_not_match_the_header_are_refused(tmp_path: Path) -> None:
    rows = customer_rows(DemoConfig(customers=3, end=END))
    with pytest.raises(ValueError, match="not in"):
        write_csv(rows, tmp_path / "orders.csv", ORDER_FIELDS)
    assert list(tmp_path.iterdir()) == []
