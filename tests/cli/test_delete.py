"""`tierwise delete` as a user runs it: files of ids, the tiers after, errors by line."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import URL

from tests.support import tierwise

RULES = """scheme spend {
  tier Big   when monetary > 100
  tier Small otherwise
}
"""


def _shop(database: URL, tenant: str, folder: Path) -> Path:
    orders = folder / "orders.csv"
    orders.write_text(
        "order_id,customer_id,ordered_at,amount\n"
        "o1,a,2026-01-05,500\n"
        "o2,b,2026-01-06,20\n"
        "o3,b,2026-01-07,200\n"
    )
    assert tierwise(database, "import", "orders", str(orders), "--tenant", tenant).returncode == 0
    rules = folder / "spend.rules"
    rules.write_text(RULES)
    assert tierwise(database, "rules", "publish", str(rules), "--tenant", tenant).returncode == 0
    return orders


def _tiers(database: URL, tenant: str) -> list[tuple[str, int]]:
    report = tierwise(database, "segments", "--tenant", tenant, "--format", "json")
    return [(row["tier"], row["customers"]) for row in json.loads(report.stdout)]


def test_deleting_orders_by_a_file_of_ids(database: URL, tenant: str, tmp_path: Path) -> None:
    _shop(database, tenant, tmp_path)
    assert _tiers(database, tenant) == [("Big", 2), ("Small", 0)]
    ids = tmp_path / "mistakes.jsonl"
    ids.write_text('{"order_id": "o3"}\n\n{"order_id": "o9"}\n')
    result = tierwise(database, "delete", "orders", str(ids), "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{ids}: 2 ids read, 1 orders deleted, 1 not found, 1 tier changes"
    )
    assert _tiers(database, tenant) == [("Big", 1), ("Small", 1)]
    check = tierwise(database, "rollups", "check", "--tenant", tenant)
    assert check.returncode == 0 and check.stdout.startswith("0 customers")


def test_the_file_of_an_import_undoes_it(database: URL, tenant: str, tmp_path: Path) -> None:
    orders = _shop(database, tenant, tmp_path)
    result = tierwise(database, "delete", "orders", str(orders), "--tenant", tenant)
    assert "3 ids read, 3 orders deleted, 0 not found, 2 tier changes" in result.stdout
    assert _tiers(database, tenant) == [("Big", 0), ("Small", 2)]


def test_a_bad_file_deletes_nothing_and_names_each_line(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    _shop(database, tenant, tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"order_id": "o1"}\n{"amount": 5}\n{"order_id": "o2", "colour": "red"}\n')
    result = tierwise(database, "delete", "orders", str(bad), "--tenant", tenant)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {bad}: 2 bad rows, nothing deleted:",
        f"  {bad}:2: order_id: is required to name what to delete, but missing",
        f"  {bad}:3: colour: unknown field",
    ]
    header = tmp_path / "bad.csv"
    header.write_text("id\no1\n")
    result = tierwise(database, "delete", "orders", str(header), "--tenant", tenant)
    assert result.returncode == 1
    assert f"{header}:1: order_id: required column is missing from the header" in result.stderr
    assert _tiers(database, tenant) == [("Big", 2), ("Small", 0)]


def test_erasing_customers(database: URL, tenant: str, tmp_path: Path) -> None:
    _shop(database, tenant, tmp_path)
    ids = tmp_path / "forget.csv"
    ids.write_text("customer_id\nb\nnobody\n")
    result = tierwise(database, "delete", "customers", str(ids), "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{ids}: 2 ids read, 1 customers erased (with 2 orders, 0 events, 1 memberships, "
        "1 transitions, 0 webhook_deliveries), 1 not found"
    )
    assert _tiers(database, tenant) == [("Big", 1), ("Small", 0)]
