"""The analyst console in a real browser (Debian's Chromium), with the network cut off: every
test fails if the page tried to reach anything but this machine (see conftest.py).

What the page shows is compared with what the command line says about the same data."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from service.access.auth import Role
from tests.api.support import token
from tests.console.support import Served, api, sign_in
from tests.support import tierwise


def cli(served: Served, *args: str) -> str:
    result = tierwise(served.database, *args, "--tenant", served.tenant)
    assert result.returncode == 0, result.stderr
    return result.stdout


def editor_text(page: Page, text: str) -> None:
    """Replace the rule editor's text, as a paste would."""
    page.get_by_role("textbox", name="Rules").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)


def test_a_wrong_token_is_refused_and_nothing_is_shown(page: Page, served: Served) -> None:
    page.goto(f"{served.base}/console")
    page.get_by_label("Token").fill("tw_nobody_0000000000000000_" + "0" * 64)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("API key")
    expect(page.get_by_role("navigation", name="Console")).to_have_count(0)


def test_a_viewer_reads_and_an_analyst_may_also_write(page: Page, served: Served) -> None:
    sign_in(page, served, served.keys[Role.viewer], "#/rules/value")
    expect(page.get_by_label("Role")).to_have_text("viewer")
    rules = page.get_by_role("textbox", name="Rules")
    expect(rules).to_contain_text("scheme value")
    expect(rules).to_have_attribute("contenteditable", "false")
    for name in ("Check", "Preview", "Publish"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    page.get_by_role("link", name="Strategies").click()
    expect(page.get_by_role("table")).to_contain_text("Key account service")
    expect(page.get_by_role("button", name="Save strategy")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, served, served.keys[Role.analyst], "#/rules/value")
    expect(page.get_by_label("Role")).to_have_text("analyst")
    expect(page.get_by_role("textbox", name="Rules")).to_have_attribute("contenteditable", "true")
    for name in ("Check", "Preview", "Publish"):
        expect(page.get_by_role("button", name=name)).to_be_visible()


def test_the_demos_link_signs_in_and_leaves_no_token_in_the_address(
    page: Page, served: Served
) -> None:
    page.goto(f"{served.base}/console#token={token(served.tenant, Role.analyst)}")
    expect(page.get_by_label("Role")).to_have_text("analyst")
    assert page.url == f"{served.base}/console#/dashboard"


def test_the_token_stays_in_the_tab_only(page: Page, served: Served) -> None:
    sign_in(page, served, served.keys[Role.analyst])
    assert page.evaluate("sessionStorage.getItem('tierwise.token')") == served.keys[Role.analyst]
    assert page.evaluate("localStorage.length") == 0
    other = page.context.new_page()  # a new tab: a new session, signed out
    other.goto(f"{served.base}/console")
    expect(other.get_by_label("Token")).to_be_visible()


def test_the_dashboard_shows_what_tierwise_segments_prints(page: Page, served: Served) -> None:
    printed: dict[tuple[str, str], list[str]] = {}
    for line in cli(served, "segments").splitlines()[1:]:
        scheme, tier, *numbers = re.split(r"\s{2,}", line.strip())
        printed[scheme, tier] = numbers
    sign_in(page, served, served.keys[Role.viewer])
    schemes = {scheme for scheme, _ in printed}
    assert schemes == {"value", "lifecycle", "rfm", "abc", "declining", "clv", "churn_risk"}
    for scheme in sorted(schemes):
        page.get_by_role("navigation", name="Schemes").get_by_role("link", name=scheme).click()
        table = page.get_by_role("table", name=f"Tiers of {scheme}")
        expect(table).to_be_visible()
        shown = {
            cells[0]: cells[1:6]
            for cells in (
                # An empty tier's average: the console's dash, the CLI's hyphen.
                [cell.strip().replace("–", "-") for cell in row.locator("th, td").all_inner_texts()]
                for row in table.locator("tbody tr").all()
            )
        }
        assert shown == {tier: numbers for (s, tier), numbers in printed.items() if s == scheme}
        expect(page.locator("#shares-chart svg")).to_be_visible()


def _cells(table: Any) -> list[list[str]]:
    return [
        [cell.strip() for cell in row.locator("th, td").all_inner_texts()]
        for row in table.locator("tbody tr").all()
    ]


def test_the_dashboards_history_last_run_sizes_migration_and_churn(
    page: Page, served: Served
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    since = (today - dt.timedelta(days=90)).isoformat()
    answer = api(
        served,
        """query ($today: Date!, $month: Date!, $since: Date!) {
          evaluationRuns(scheme: "rfm", last: 1) { version }
          segments(scheme: "rfm") { tier customerCount }
          migrationMatrix(scheme: "rfm", fromDate: $month, toDate: $today) {
            fromTier toTier customerCount }
          churn(scheme: "rfm", since: $since) { tier customerCount churned } }""",
        {
            "today": today.isoformat(),
            "month": (today - dt.timedelta(days=30)).isoformat(),
            "since": since,
        },
    )
    sign_in(page, served, served.keys[Role.viewer], "#/dashboard/rfm")
    (run,) = answer["evaluationRuns"]
    expect(page.get_by_label("Last run")).to_contain_text(f"Version {run['version']}, demo")
    sizes = page.get_by_role("table", name="Tier sizes of rfm")
    expect(sizes).to_be_visible()
    today_column = {cells[0]: cells[-1] for cells in _cells(sizes)}
    assert today_column == {s["tier"]: f"{s['customerCount']:,}" for s in answer["segments"]}
    expect(page.locator("#sizes-chart svg")).to_be_visible()
    migration = page.get_by_role("table", name="Migration of rfm")
    expect(migration).to_be_visible()
    assert _cells(migration) == [
        [c["fromTier"] or "(none)", c["toTier"] or "(none)", f"{c['customerCount']:,}"]
        for c in answer["migrationMatrix"]
    ]
    expect(page.locator("#migration-chart svg")).to_be_visible()
    churn = page.get_by_role("table", name="Churn of rfm in the last 90 days")
    assert [cells[:3] for cells in _cells(churn)] == [
        [c["tier"], f"{c['customerCount']:,}", f"{c['churned']:,}"] for c in answer["churn"]
    ]


def test_a_mistake_is_underlined_where_it_is_with_its_message(page: Page, served: Served) -> None:
    sign_in(page, served, served.keys[Role.analyst], "#/rules/value")
    editor_text(page, "scheme s {\n  tier A when ")
    page.keyboard.type("frequncy > 2")
    page.keyboard.insert_text("\n  tier B otherwise\n}\n")
    underlined = page.locator(".cm-lintRange-error")
    expect(underlined).to_have_text("frequncy")
    problem = page.get_by_role("list", name="Problems").get_by_role("listitem")
    expect(problem).to_contain_text("line 2, column 15: error:")
    expect(problem).to_contain_text("did you mean `frequency`")
    expect(problem).to_contain_text("[unknown-metric]")
    underlined.hover()
    expect(page.locator(".cm-tooltip-lint")).to_contain_text("2:15: unknown metric")
    expect(page.locator(".cm-tooltip-lint")).to_contain_text("[unknown-metric]")

    page.keyboard.press("Control+End")
    editor_text(page, "scheme s {\n  tier A when frequency > 2\n  tier B otherwise\n}\n")
    expect(underlined).to_have_count(0)
    page.get_by_role("button", name="Check").click()
    expect(page.get_by_role("status")).to_have_text("No problems found.")


def test_completion_offers_the_catalogs_metrics(page: Page, served: Served) -> None:
    sign_in(page, served, served.keys[Role.analyst], "#/rules/value")
    editor_text(page, "scheme s {\n  tier A when ")
    page.keyboard.type("moneta")
    option = page.get_by_role("option", name=re.compile("^monetary"))
    option.click()
    expect(page.get_by_role("textbox", name="Rules")).to_contain_text("tier A when monetary")


def test_completion_offers_a_text_fields_values_from_the_data(page: Page, served: Served) -> None:
    values = api(served, '{ textValues(metric: "region") { value customerCount } }')["textValues"]
    assert len(values) > 1
    sign_in(page, served, served.keys[Role.analyst], "#/rules/value")
    editor_text(page, "scheme s {\n  tier A when ")
    page.keyboard.type('region = "')
    options = page.get_by_role("listbox").get_by_role("option")
    expect(options).to_have_count(len(values))
    for option, value in zip(options.all(), values, strict=True):
        expect(option).to_contain_text(value["value"])
        expect(option).to_contain_text(f"{value['customerCount']:,} customers")
    page.get_by_role("option", name=re.compile(f"^{values[1]['value']}")).click()
    expect(page.get_by_role("textbox", name="Rules")).to_contain_text(
        f'tier A when region = "{values[1]["value"]}"'
    )
    # In a list too, and nothing for a number.
    page.keyboard.press("End")
    page.keyboard.type(' or gender in ("')
    expect(page.get_by_role("listbox").get_by_role("option").first).to_contain_text("customers")


RULES = """scheme value "Customer value" {
  tier VIP       when monetary(365 days) > 3000 and frequency(365 days) >= 2
  tier Potential when frequency(365 days) <= 1
  tier Normal    otherwise
}
"""


def test_preview_shows_what_tierwise_rules_preview_prints(
    page: Page, served: Served, tmp_path: Path
) -> None:
    path = tmp_path / "value.rules"
    path.write_text(RULES)
    (printed,) = json.loads(cli(served, "rules", "preview", str(path), "--format", "json"))
    sign_in(page, served, served.keys[Role.analyst], "#/rules/value")
    editor_text(page, RULES)
    page.get_by_role("button", name="Preview").click()
    table = page.get_by_role("table", name="What publishing value would do")
    expect(table).to_be_visible()
    rows = {
        cells[0]: cells
        for cells in (
            row.locator("th, td").all_inner_texts() for row in table.locator("tbody tr").all()
        )
    }
    assert {
        tier: (int(cells[2].replace(",", "")), Decimal(cells[5].replace(",", "")))
        for tier, cells in rows.items()
    } == {
        t["tier"]: (t["customers"], Decimal(f"{Decimal(str(t['revenue'])):.2f}"))
        for t in printed["tiers"]
    }
    moves = page.get_by_role("table", name="Moves")
    shown = [
        tuple(row.locator("th, td").all_inner_texts()) for row in moves.locator("tbody tr").all()
    ]
    assert shown == [
        (m["from"] or "(none)", m["to"] or "(none)", f"{m['customers']:,}")
        for m in printed["moves"]
        if m["from"] != m["to"]
    ]
    assert shown, "the preview's rules move someone"
    expect(page.locator(".chart.heatmap svg")).to_be_visible()
    # A sample of each move's customers, each with why the rules would place them so.
    previewed = api(
        served,
        "query ($s: String!) { previewRules(source: $s) { schemes { moves { fromTier toTier "
        "sample { customerId explanation { tier } } } } } }",
        {"s": RULES},
    )["previewRules"]["schemes"][0]["moves"]
    samples = page.get_by_role("list", name="Moving customers").locator("li[data-customer]")
    expected = [
        (s["customerId"], m["toTier"])
        for m in previewed
        if m["fromTier"] != m["toTier"]
        for s in m["sample"]
    ]
    assert 0 < len(expected) <= 3 * len(shown)
    assert samples.evaluate_all("items => items.map(i => i.dataset.customer)") == [
        c for c, _ in expected
    ]
    customer, tier = expected[0]
    samples.first.locator("summary").click()
    expect(samples.first).to_contain_text(f"the rules place {customer} in {tier}.")


def test_publish_makes_a_new_version(page: Page, served: Served) -> None:
    sign_in(page, served, served.keys[Role.analyst], "#/rules/")
    page.get_by_label("Scheme").select_option(label="(new scheme)")
    trial = 'scheme trial "Trial" {\n  tier Big when monetary > 2000\n  tier Small otherwise\n}\n'
    editor_text(page, trial)
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Published trial version 1")
    editor_text(page, trial.replace("2000", "2500"))
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Published trial version 2")
    schemes = {s["key"]: s for s in api(served, "{ schemes { key version source } }")["schemes"]}
    assert schemes["trial"]["version"] == 2
    assert "monetary > 2500" in schemes["trial"]["source"]
    expect(page.get_by_label("Scheme")).to_contain_text("trial (version 2)")


def test_the_version_history_and_a_diff(page: Page, served: Served) -> None:
    publish = 'mutation ($s: String!) { publishScheme(key: "hist", source: $s) { changed } }'
    first = "scheme hist {\n  tier Big when monetary > 2000\n  tier Small otherwise\n}\n"
    api(served, publish, {"s": first})
    api(
        served,
        publish,
        {"s": first.replace("Big when monetary > 2000", "Huge when monetary > 9000")},
    )
    versions = api(served, '{ schemeVersions(scheme: "hist") { version publishedBy } }')
    sign_in(page, served, served.keys[Role.viewer], "#/rules/hist")
    listed = page.get_by_role("table", name="Versions of hist")
    expect(listed.locator("tbody tr")).to_have_count(2)
    rows = [row.locator("th, td").all_inner_texts() for row in listed.locator("tbody tr").all()]
    assert [(r[0], r[2]) for r in rows] == [
        (f"{v['version']}{' (current)' if i == 0 else ''}", v["publishedBy"])
        for i, v in enumerate(versions["schemeVersions"])
    ]
    page.get_by_role("button", name="Show diff").click()
    diff = page.get_by_label("Diff of version 1 and 2")
    expect(diff.locator(".removed")).to_have_text(re.compile(r"^- +tier Big +when monetary > 2000"))
    expect(diff.locator(".added")).to_have_text(re.compile(r"^\+ +tier Huge +when monetary > 9000"))
    expect(page.get_by_text("tiers added: Huge; tiers removed: Big")).to_be_visible()


def _leaves(clause: dict[str, Any]) -> list[dict[str, Any]]:
    children = clause.get("children") or []
    found = [clause] if clause.get("metric") else []
    return found + [leaf for child in children for leaf in _leaves(child)]


def test_the_customer_card_explains_as_explain_does(page: Page, served: Served) -> None:
    members = api(
        served, '{ customers(scheme: "value", tier: "VIP", first: 1) { edges { node { id } } } }'
    )
    customer = members["customers"]["edges"][0]["node"]["id"]
    sign_in(page, served, served.keys[Role.viewer], f"#/customers/{customer}?scheme=value")
    explanation = api(
        served,
        """query ($c: ID!) { explain(customer: $c, scheme: "value") {
          tier tiers { name result matched
            clause { metric actual children { metric actual children { metric actual } } } } } }""",
        {"c": customer},
    )["explain"]
    section = page.get_by_role("region", name="Explanation")
    expect(section).to_contain_text(f"the rules place this customer in {explanation['tier']}")
    for trace in explanation["tiers"]:
        item = section.locator(f'li[data-tier="{trace["name"]}"]')
        expect(item.locator(".result").first).to_contain_text(trace["result"].lower())
        actual = item.locator(".actual").all_inner_texts()
        leaves = _leaves(trace["clause"]) if trace["clause"] else []
        assert actual == [
            leaf["actual"] if isinstance(leaf["actual"], str) else json.dumps(leaf["actual"])
            for leaf in leaves
        ]
    expect(page.get_by_role("table", name="Current tiers")).to_contain_text("VIP")
    expect(page.get_by_role("list", name="Tier history")).to_contain_text("value")
    # The predictions, as the API gives them (exact decimals; money to two places).
    metrics = api(
        served,
        "query ($c: ID!) { customer(id: $c) { metrics { pAlive expectedOrders clv } } }",
        {"c": customer},
    )["customer"]["metrics"]
    profile = page.get_by_role("region", name="Profile")
    expect(profile).to_contain_text(f"P(alive){metrics['pAlive']}")
    expect(profile).to_contain_text(f"Expected orders (365 days){metrics['expectedOrders']}")
    expect(profile).to_contain_text("CLV (365 days)")


_MODEL = (Path(__file__).parents[2] / "graphql/operations/prediction_model.graphql").read_text()


def _chart_data(page: Page, chart: str) -> dict[str, list[tuple[str, Decimal]]]:
    """The numbers a chart draws, read from the description ECharts writes for screen readers
    ("... the data for 7+ is 7, 5.6625, ...": a line's point is its category's index and its
    value), by series."""
    label = page.locator(f"#{chart}").get_attribute("aria-label") or ""
    series: dict[str, list[tuple[str, Decimal]]] = {}
    for part in re.split(r"(?=The \w+ series)", label)[1:]:
        name = re.search(r"representing (\w+)", part)
        assert name, label
        pairs = re.findall(r"the data for (\S+) is \d+, (-?\d+(?:\.\d+)?)", part)
        series[name[1]] = [(bucket, Decimal(value)) for bucket, value in pairs]
    return series


def test_the_models_calibration_chart_shows_predicted_against_actual(
    page: Page, served: Served
) -> None:
    model = api(served, _MODEL)["model"]
    calibration = model["calibration"]
    buckets = calibration["buckets"]
    assert len(buckets) == 8, "0 to 6 and 7+ repeat purchases: each has demo customers"
    sign_in(page, served, served.keys[Role.viewer], "#/predictions")
    expect(page.get_by_label("Model")).to_contain_text(f"Version {model['version']}, fitted")
    shown = page.get_by_role("table", name="Calibration")
    expect(shown).to_be_visible()
    customers = sum(b["customers"] for b in buckets)
    assert _cells(shown) == [
        [b["repeatPurchases"], f"{b['customers']:,}", b["predicted"], b["actual"]] for b in buckets
    ] + [
        [
            "Total",
            f"{customers:,}",
            f"{Decimal(calibration['predicted']):,.1f}",
            f"{calibration['actual']:,}",
        ]
    ]
    error = Decimal(calibration["error"])
    expect(page.get_by_label("Calibration totals")).to_contain_text(f"error {error:+.1%}")
    expect(page.locator("#calibration-chart svg")).to_be_visible()
    assert _chart_data(page, "calibration-chart") == {
        name: [(b["repeatPurchases"], Decimal(b[key])) for b in buckets]
        for name, key in (("Predicted", "predicted"), ("Actual", "actual"))
    }

    # Another period: the page asks the API for it and draws its numbers.
    holdout_end = calibration["holdoutEnd"][:10]
    calibration_end = (dt.date.fromisoformat(holdout_end) - dt.timedelta(days=90)).isoformat()
    other = api(
        served,
        _MODEL,
        {
            "calibrationEnd": f"{calibration_end}T00:00:00+00:00",
            "holdoutEnd": f"{holdout_end}T00:00:00+00:00",
        },
    )["model"]["calibration"]
    page.get_by_label("Calibration end").fill(calibration_end)
    page.get_by_label("Holdout end").fill(holdout_end)
    page.get_by_role("button", name="Validate").click()
    expect(page.get_by_label("Calibration totals")).to_contain_text(
        f"From {calibration_end} 00:00:00 UTC"
    )
    assert _chart_data(page, "calibration-chart")["Actual"] == [
        (b["repeatPurchases"], Decimal(b["actual"])) for b in other["buckets"]
    ]

    # A period with no repeat buyers before it: the model stays, the reason replaces the chart.
    page.get_by_label("Calibration end").fill("2000-01-01")
    page.get_by_role("button", name="Validate").click()
    expect(page.get_by_role("alert")).to_contain_text("repeat purchase")
    expect(page.get_by_label("Model")).to_contain_text(f"Version {model['version']}, fitted")
    expect(page.get_by_label("Calibration end")).to_have_value("2000-01-01")


def test_segment_members_page_with_a_where(page: Page, served: Served) -> None:
    where = 'region = "east"'
    expected = api(
        served,
        "query ($w: String) "
        '{ customers(scheme: "value", tier: "Normal", where: $w) { totalCount } }',
        {"w": where},
    )["customers"]["totalCount"]
    sign_in(page, served, served.keys[Role.viewer], "#/segments/value/Normal")
    page.get_by_label("Where").fill(where)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("status")).to_contain_text(f"{expected:,} customers; 1 to ")
    assert expected > 50, "enough for a second page"
    page.get_by_role("button", name="Next page").click()
    expect(page.get_by_role("status")).to_contain_text("51 to ")


def test_export_csv_gives_exactly_the_tiers_members(page: Page, served: Served) -> None:
    expected: list[list[str]] = []
    after = None
    while True:  # every page of the API's customers of the tier
        members = api(
            served,
            'query ($after: String) { customers(scheme: "value", tier: "Normal", after: $after) '
            "{ totalCount pageInfo { hasNextPage endCursor } "
            "edges { node { id metrics { monetary } } } } }",
            {"after": after},
        )["customers"]
        expected += [[e["node"]["id"], e["node"]["metrics"]["monetary"]] for e in members["edges"]]
        if not members["pageInfo"]["hasNextPage"]:
            break
        after = members["pageInfo"]["endCursor"]
    assert len(expected) == members["totalCount"] > 100, "more than a page of the API"
    sign_in(page, served, served.keys[Role.viewer], "#/segments/value/Normal")
    page.get_by_label("Columns").fill("monetary")
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Export CSV").click()
    download = downloading.value
    assert download.suggested_filename == "value-Normal.csv"
    header, *rows = csv.reader(io.StringIO(Path(download.path()).read_text()))
    assert header == ["customer_id", "monetary"]
    assert rows == expected
    expect(page.get_by_text("Exported ")).to_have_text(
        f"Exported {members['totalCount']:,} customers to value-Normal.csv."
    )
    segments = {
        row["tier"]: row["customers"]
        for row in json.loads(cli(served, "segments", "--scheme", "value", "--format", "json"))
    }
    assert len(rows) == segments["Normal"]


def test_an_analyst_saves_a_strategy(page: Page, served: Served) -> None:
    sign_in(page, served, served.keys[Role.analyst], "#/strategies/value")
    page.get_by_label("Tier").select_option("Potential")
    page.get_by_label("Name").fill("Welcome call")
    page.get_by_label("Channel").fill("phone")
    page.get_by_label("Priority").fill("5")
    page.get_by_role("button", name="Save strategy").click()
    expect(page.get_by_role("status")).to_have_text("Saved Welcome call for Potential.")
    expect(page.get_by_role("table", name="Strategies of value")).to_contain_text("Welcome call")
    saved = api(
        served, '{ strategies(scheme: "value", tier: "Potential") { name channel priority } }'
    )
    assert {"name": "Welcome call", "channel": "phone", "priority": 5} in saved["strategies"]


def test_an_analyst_edits_a_strategy_into_an_inactive_one(page: Page, served: Served) -> None:
    sign_in(page, served, served.keys[Role.analyst], "#/strategies/value")
    page.get_by_label("Tier").select_option("Normal")
    page.get_by_label("Name").fill("Quiet letter")
    page.get_by_label("Channel").fill("mail")
    page.get_by_role("button", name="Save strategy").click()
    expect(page.get_by_role("status")).to_have_text("Saved Quiet letter for Normal.")
    page.get_by_role("button", name="Edit Normal Quiet letter").click()
    page.get_by_label("Active").uncheck()
    page.get_by_role("button", name="Save strategy").click()
    row = page.get_by_role("row").filter(has_text="Quiet letter")
    expect(row.get_by_role("cell", name="no", exact=True)).to_be_visible()
    listed = api(
        served,
        '{ active: strategies(scheme: "value") { name } '
        'all: strategies(scheme: "value", includeInactive: true) { name active } }',
    )
    assert "Quiet letter" not in [s["name"] for s in listed["active"]]
    assert {"name": "Quiet letter", "active": False} in listed["all"]
    page.get_by_role("button", name="Delete Normal Quiet letter").click()
    expect(page.get_by_role("table", name="Strategies of value")).not_to_contain_text(
        "Quiet letter"
    )


def test_graphiql_loads_and_runs_a_query_with_no_network(page: Page, served: Served) -> None:
    sign_in(page, served, token(served.tenant, Role.analyst))
    page.goto(f"{served.base}/graphql")
    expect(page.locator(".graphiql-container")).to_be_visible()
    page.get_by_role("button", name=re.compile("Execute query")).click()
    expect(page.locator(".result-window")).to_contain_text("customerCount")


def test_the_readme_example_query_answers_with_data_on_the_demo_data(served: Served) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (query,) = re.findall(r"```graphql\n(.*?)```", readme, re.DOTALL)
    answer = api(served, query)
    assert answer["customer"]["tiers"], "the example customer is in the demo data, placed"
    assert answer["customer"]["explain"]["tier"] is not None
    assert answer["customers"]["edges"], "the example's filter matches demo customers"
