"""The engine's commands as a user runs them: publish, preview, evaluate, segments."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import URL

from tests.support import tierwise

RULES = """scheme spend "Spend" {
  tier Big   when monetary > 100
  tier Small otherwise
}
"""


def orders_file(folder: Path) -> Path:
    path = folder / "orders.csv"
    path.write_text(
        "order_id,customer_id,ordered_at,amount\n"
        "o1,a,2026-01-05,500\n"
        "o2,b,2026-01-06,20\n"
        "o3,c,2026-03-01,30\n"
    )
    return path


def test_publish_evaluates_and_segments_report(database: URL, tenant: str, tmp_path: Path) -> None:
    assert (
        tierwise(
            database, "import", "orders", str(orders_file(tmp_path)), "--tenant", tenant
        ).returncode
        == 0
    )
    rules = tmp_path / "spend.rules"
    rules.write_text(RULES)
    published = tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    assert published.returncode == 0, published.stderr
    assert "scheme spend: version 1 published" in published.stdout
    assert "evaluated spend v1: Big 1, Small 2; 3 customers changed tier" in published.stdout

    segments = tierwise(database, "segments", "--tenant", tenant, "--format", "json")
    assert json.loads(segments.stdout, parse_float=Decimal) == [
        {
            "scheme": "spend",
            "tier": "Big",
            "customers": 1,
            "customer_share": Decimal("0.3333"),
            "revenue": 500,
            "revenue_share": Decimal("0.9091"),
        },
        {
            "scheme": "spend",
            "tier": "Small",
            "customers": 2,
            "customer_share": Decimal("0.6667"),
            "revenue": 50,
            "revenue_share": Decimal("0.0909"),
        },
    ]
    evaluated = tierwise(database, "evaluate", "--tenant", tenant, "--format", "json")
    assert json.loads(evaluated.stdout) == json.loads(segments.stdout)

    again = tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    assert "scheme spend: version 1 unchanged" in again.stdout


def test_json_reports_print_exact_decimals(database: URL, tenant: str, tmp_path: Path) -> None:
    """`segments --format json` printed revenue through a float, off in the last digits; the
    preview's too. Now exact JSON numbers, trailing zeros dropped."""
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,ordered_at,amount\n"
        "o1,a,2026-01-05,99999999999999.9999\n"
        "o2,a,2026-01-06,0.0001\n"
        "o3,b,2026-01-06,11.0441\n"
    )
    assert tierwise(database, "import", "orders", str(path), "--tenant", tenant).returncode == 0
    rules = tmp_path / "spend.rules"
    rules.write_text(RULES)
    tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    segments = tierwise(database, "segments", "--tenant", tenant, "--format", "json")
    assert '"revenue": 100000000000000,' in segments.stdout, segments.stdout
    assert '"revenue": 11.0441,' in segments.stdout
    preview = tierwise(
        database, "rules", "preview", str(rules), "--tenant", tenant, "--format", "json"
    )
    tiers = json.loads(preview.stdout, parse_float=Decimal)[0]["tiers"]
    assert [t["revenue"] for t in tiers] == [100000000000000, Decimal("11.0441")]


def test_backtest_uses_only_data_before_the_date(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    tierwise(database, "import", "orders", str(orders_file(tmp_path)), "--tenant", tenant)
    rules = tmp_path / "spend.rules"
    rules.write_text(RULES)
    tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    backtest = tierwise(
        database, "evaluate", "--tenant", tenant, "--as-of", "2026-01-06", "--format", "json"
    )
    assert backtest.returncode == 0, backtest.stderr
    # On 6 January only a's order existed; b's is that day and c's later: b and c were not
    # customers yet, so they are in no tier.
    assert [
        (row["tier"], row["customers"], row["revenue"]) for row in json.loads(backtest.stdout)
    ] == [
        ("Big", 1, 500),
        ("Small", 0, 0),
    ]
    text = tierwise(database, "evaluate", "--tenant", tenant, "--as-of", "2026-01-06")
    assert text.stdout.splitlines()[0] == "backtest as of 2026-01-06 00:00 UTC, nothing changed"
    future = tierwise(database, "evaluate", "--tenant", tenant, "--as-of", "2999-01-01")
    assert future.returncode == 1
    assert "error: --as-of: as of 2999-01-01 00:00 UTC is in the future" in future.stderr


def test_backtest_in_tier_reads_the_referenced_scheme_as_of_then(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    """The case `backtest-in-tier`: one table said `base Small` and `dep Yes` for the same
    customer, because `in tier` read today's tiers."""
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,customer_id,ordered_at,amount\nO1,EVE,2026-01-01,50\nO2,EVE,2026-01-02,60\n"
    )
    rules = tmp_path / "rules.rules"
    rules.write_text(
        "scheme base {\n  tier Big   when monetary >= 100\n  tier Small otherwise\n}\n"
        "scheme dep {\n  tier Yes when in tier base.Big\n  tier No  otherwise\n}\n"
    )
    tierwise(database, "import", "orders", str(orders), "--tenant", tenant)
    published = tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    assert "evaluated dep v1: Yes 1, No 0" in published.stdout
    backtest = tierwise(
        database, "evaluate", "--tenant", tenant, "--as-of", "2026-01-02", "--format", "json"
    )
    assert backtest.returncode == 0, backtest.stderr
    placed = {(r["scheme"], r["tier"]) for r in json.loads(backtest.stdout) if r["customers"]}
    assert placed == {("base", "Small"), ("dep", "No")}
    only_dep = tierwise(
        database,
        "evaluate",
        *("--scheme", "dep", "--tenant", tenant, "--as-of", "2026-01-02", "--format", "json"),
    )
    assert only_dep.returncode == 0, only_dep.stderr
    assert [(r["tier"], r["customers"]) for r in json.loads(only_dep.stdout)] == [
        ("Yes", 0),
        ("No", 1),
    ]
    preview = tierwise(
        database,
        "rules",
        "preview",
        str(rules),
        "--tenant",
        tenant,
        "--as-of",
        "2026-01-02",
        "--format",
        "json",
    )
    assert {
        (p["scheme"], t["tier"])
        for p in json.loads(preview.stdout)
        for t in p["tiers"]
        if t["customers"]
    } == {("base", "Small"), ("dep", "No")}


def test_preview_writes_nothing_and_shows_moves(database: URL, tenant: str, tmp_path: Path) -> None:
    tierwise(database, "import", "orders", str(orders_file(tmp_path)), "--tenant", tenant)
    rules = tmp_path / "spend.rules"
    rules.write_text(RULES)
    tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    draft = tmp_path / "draft.rules"
    draft.write_text(RULES.replace("100", "25"))
    preview = tierwise(
        database, "rules", "preview", str(draft), "--tenant", tenant, "--format", "json"
    )
    assert preview.returncode == 0, preview.stderr
    (result,) = json.loads(preview.stdout)
    assert [(t["tier"], t["customers"]) for t in result["tiers"]] == [("Big", 2), ("Small", 1)]
    assert result["moves"] == [{"from": "Small", "to": "Big", "customers": 1}]
    text = tierwise(database, "rules", "preview", str(draft), "--tenant", tenant).stdout
    lines = text.splitlines()
    assert lines[1].split() == ["tier", "customers", "share", "revenue"], text
    assert lines[2].split()[:2] == ["Big", "2"]
    assert "would move (from current tier -> to tier: customers):" in text
    assert "Small -> Big: 1" in text
    segments = tierwise(database, "segments", "--tenant", tenant, "--format", "json")
    assert [row["customers"] for row in json.loads(segments.stdout)] == [1, 2]


def test_bad_rules_are_refused_with_positions(database: URL, tenant: str, tmp_path: Path) -> None:
    rules = tmp_path / "bad.rules"
    rules.write_text("scheme s {\n  tier A when monetory > 5\n}\n")
    result = tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    assert result.returncode == 1
    assert f"{rules}:2:15: error: unknown metric `monetory`" in result.stderr
    assert "not published" in result.stderr
    assert "Traceback" not in result.stderr
    assert (
        json.loads(tierwise(database, "segments", "--tenant", tenant, "--format", "json").stdout)
        == []
    )


def test_two_tiers_of_one_name_are_an_error(database: URL, tenant: str, tmp_path: Path) -> None:
    """Published with a warning, such a scheme was listed twice by `segments`, its shares
    adding up to more than 100 %: now check and publish refuse it at the second name."""
    tierwise(database, "import", "orders", str(orders_file(tmp_path)), "--tenant", tenant)
    rules = tmp_path / "twice.rules"
    rules.write_text(
        "scheme spend {\n  tier Big when monetary > 100\n  tier Big when frequency >= 1\n"
        "  tier Small otherwise\n}\n"
    )
    message = f"{rules}:3:8: error: another tier is already named `Big` (line 2)"
    checked = tierwise(database, "rules", "check", str(rules))
    assert checked.returncode == 1
    assert message in checked.stdout
    published = tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    assert published.returncode == 1
    assert message in published.stderr
    segments = tierwise(database, "segments", "--tenant", tenant, "--format", "json")
    assert json.loads(segments.stdout) == []


def test_templates_can_be_listed_copied_and_published(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    listing = tierwise(database, "rules", "templates")
    assert [line.split()[0] for line in listing.stdout.splitlines()] == [
        "value",
        "lifecycle",
        "rfm",
        "abc",
        "declining",
        "clv",
        "churn_risk",
    ]
    copy = tmp_path / "lifecycle.rules"
    copy.write_text(tierwise(database, "rules", "templates", "lifecycle").stdout)
    published = tierwise(database, "rules", "publish", str(copy), "--tenant", tenant)
    assert "scheme lifecycle: version 1 published" in published.stdout


def test_an_unknown_scheme_is_an_error_saying_so(database: URL, tenant: str) -> None:
    for command in ("segments", "evaluate"):
        result = tierwise(database, command, "--scheme", "nope", "--tenant", tenant)
        assert result.returncode == 1
        assert f"no published scheme 'nope' in tenant {tenant!r}" in result.stderr
        assert "Traceback" not in result.stderr


def test_orders_dated_after_the_evaluation_time_count_in_no_revenue(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    """Issue 11: one order dated 2099 made 99 % of a tier's revenue. Revenue is counted as of
    the evaluation time in `evaluate`, `segments` and `preview`, and as of DATE with
    `--as-of`; the tiers are the same either way, as `monetary` already ignored it."""
    orders = orders_file(tmp_path)
    with orders.open("a") as file:
        file.write("o4,b,2099-01-01,1000000\n")
    assert tierwise(database, "import", "orders", str(orders), "--tenant", tenant).returncode == 0
    rules = tmp_path / "spend.rules"
    rules.write_text(RULES)
    published = tierwise(database, "rules", "publish", str(rules), "--tenant", tenant)
    assert "evaluated spend v1: Big 1, Small 2" in published.stdout, published.stderr
    expected = [("Big", 1, 500.0, 0.9091), ("Small", 2, 50.0, 0.0909)]

    def figures(result: subprocess.CompletedProcess[str]) -> list[tuple[object, ...]]:
        assert result.returncode == 0, result.stderr
        return [
            (row["tier"], row["customers"], row["revenue"], row["revenue_share"])
            for row in json.loads(result.stdout)
        ]

    assert figures(tierwise(database, "segments", "--tenant", tenant, "--format", "json")) == (
        expected
    )
    assert figures(tierwise(database, "evaluate", "--tenant", tenant, "--format", "json")) == (
        expected
    )
    backtest = tierwise(
        database, "evaluate", "--tenant", tenant, "--as-of", "2026-03-02", "--format", "json"
    )
    assert figures(backtest) == expected
    preview = tierwise(
        database, "rules", "preview", str(rules), "--tenant", tenant, "--format", "json"
    )
    assert preview.returncode == 0, preview.stderr
    (only,) = json.loads(preview.stdout)
    assert [(t["tier"], t["customers"], t["revenue"]) for t in only["tiers"]] == [
        ("Big", 1, 500.0),
        ("Small", 2, 50.0),
    ]
    preview_then = tierwise(
        database,
        "rules",
        "preview",
        str(rules),
        "--tenant",
        tenant,
        "--as-of",
        "2026-01-06",
        "--format",
        "json",
    )
    (then,) = json.loads(preview_then.stdout)
    assert [(t["tier"], t["customers"], t["revenue"]) for t in then["tiers"]] == [
        ("Big", 1, 500.0),
        ("Small", 0, 0.0),
    ]
