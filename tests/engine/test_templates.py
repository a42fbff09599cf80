"""Built-in templates: they check cleanly, their strategies fit, the docs show them verbatim,
and on demo data each gives a plausible, exactly explainable distribution."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dsl import check_text, compile_scheme, docs
from service.data.demo_data import (
    DemoConfig,
    customer_rows,
    event_rows,
    order_rows,
    set_up_tenant,
)
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db.database import tenant_transaction
from service.engine.evaluation import tenant_sources
from service.engine.predictions import tenant as models
from service.engine.templates import KEYS, TEMPLATES

END = datetime(2026, 1, 1, tzinfo=UTC)
DEMO = DemoConfig(customers=2_000, seed=11, end=END)


def test_every_template_checks_without_errors_or_warnings() -> None:
    assert (
        tuple(TEMPLATES)
        == KEYS
        == (
            "value",
            "lifecycle",
            "rfm",
            "abc",
            "declining",
            "clv",
            "churn_risk",
        )
    )
    for template in TEMPLATES.values():
        result = check_text(template.source, file=template.file)
        assert not result.warnings, (template.key, result.warnings)
        [scheme] = result.schemes
        assert scheme.key == template.key and scheme.title == template.title


def test_tiers_are_the_brief_s() -> None:
    names = {key: t.check().tier_names for key, t in TEMPLATES.items()}
    assert names["value"] == ("VIP", "Potential", "Normal")
    assert names["lifecycle"] == ("Prospect", "New", "Growing", "Mature", "Declining", "Churned")
    assert set(names["rfm"]) == {
        "Champions",
        "Loyal",
        "Potential Loyalist",
        "New",
        "Promising",
        "Need Attention",
        "About to Sleep",
        "At Risk",
        "Can't Lose Them",
        "Hibernating",
    }
    assert names["abc"] == ("A", "B", "C")
    assert names["declining"] == ("Lapsed", "Declining", "Growing", "Steady", "Inactive")
    assert names["clv"] == ("Top", "High", "Rest")
    assert names["churn_risk"] == ("At risk", "Slipping", "Other")


def test_strategies_belong_to_tiers_and_are_well_formed() -> None:
    for template in TEMPLATES.values():
        tiers = set(template.check().tier_names)
        assert {s.tier for s in template.strategies} == tiers, template.key  # none left bare
        assert len({(s.tier, s.name) for s in template.strategies}) == len(template.strategies)
        for s in template.strategies:
            assert s.name and s.description and s.channel and s.priority > 0
            assert all(isinstance(v, int | str) for v in s.parameters.values())
    vip = sorted(
        (s for s in TEMPLATES["value"].strategies if s.tier == "VIP"), key=lambda s: s.priority
    )
    # The brief: personal service, exclusive offers, regular follow-up calls.
    assert [s.channel for s in vip] == ["account_manager", "coupon", "phone"]
    declining = [s for s in TEMPLATES["lifecycle"].strategies if s.tier == "Declining"]
    assert min(declining, key=lambda s: s.priority).name == "Win-back offer"


def test_docs_cookbook_shows_the_template_files_verbatim() -> None:
    blocks = re.findall(r"```rules\n(.*?)```", docs.DOC.read_text(encoding="utf-8"), flags=re.S)
    for template in TEMPLATES.values():
        assert template.source in blocks, f"docs/rules.md cookbook differs from {template.file}"


async def _load_demo(engine: AsyncEngine, tenant: str) -> None:
    await set_up_tenant(engine, tenant, DEMO)
    for kind, rows in (
        (Kind.customers, customer_rows(DEMO)),
        (Kind.orders, order_rows(DEMO)),
        (Kind.events, event_rows(DemoConfig(customers=2_000, seed=11, end=END))),
    ):
        await import_rows(engine, kind, tenant, enumerate(rows, 2), source="demo")


async def _tiers(engine: AsyncEngine, tenant: str, key: str) -> dict[int, str | None]:
    statement = compile_scheme(TEMPLATES[key].check(), tenant_sources(tenant), END)
    async with engine.connect() as connection:
        return {row.customer_id: row.tier for row in await connection.execute(statement)}


async def _order_facts(engine: AsyncEngine, tenant: str) -> dict[int, Any]:
    """Per customer: purchases, last purchase time, net spend in the last 365 days, in the
    last 90 days and in the 90 days before them, registration. Written out here, apart from
    the catalog: a purchase is a completed sale (the demo's refunds all name their order) that
    its refunds do not cover in full."""
    statement = text(
        """
        WITH o AS (
            SELECT o.*, o.status = 'completed' AND o.refund_of IS NULL
                        AND coalesce((SELECT -sum(r.amount) FROM orders r
                                      WHERE r.tenant_id = o.tenant_id
                                        AND r.customer_id = o.customer_id
                                        AND r.refund_of = o.external_id), 0) < o.amount
                        AS purchase
            FROM orders o WHERE o.tenant_id = :t
        )
        SELECT c.id, c.registered_at, count(*) FILTER (WHERE o.purchase) AS n,
               max(o.ordered_at) FILTER (WHERE o.purchase) AS last,
               coalesce(sum(o.amount) FILTER (
                   WHERE o.status <> 'cancelled' AND o.ordered_at >= :year_ago), 0) AS year_spend,
               coalesce(sum(o.amount) FILTER (
                   WHERE o.status <> 'cancelled' AND o.ordered_at >= :days_90), 0) AS spend_now,
               coalesce(sum(o.amount) FILTER (
                   WHERE o.status <> 'cancelled' AND o.ordered_at >= :days_180
                     AND o.ordered_at < :days_90), 0) AS spend_before
        FROM customers c LEFT JOIN o ON o.customer_id = c.id
        WHERE c.tenant_id = :t
        GROUP BY c.id, c.registered_at
        """
    ).bindparams(
        t=tenant,
        year_ago=END - timedelta(days=365),
        days_90=END - timedelta(days=90),
        days_180=END - timedelta(days=180),
    )
    async with engine.connect() as connection:
        return {row.id: row for row in await connection.execute(statement)}


async def test_templates_on_demo_data(engine: AsyncEngine, tenant: str) -> None:
    await _load_demo(engine, tenant)
    facts = await _order_facts(engine, tenant)
    assert len(facts) == 2_000
    assert all(f.last is None or f.last < END for f in facts.values())  # as_of is after all data
    async with tenant_transaction(engine, tenant) as connection:
        model, _ = await models.fit_tenant(connection, tenant, END)
        summary = await models.read_summary(connection, tenant, END)
    predicted = models.prediction_facts(model, summary)
    tiers = {key: await _tiers(engine, tenant, key) for key in KEYS}

    # Value: every tier holds customers; VIPs are few, normal customers the bulk.
    value = Counter(tiers["value"].values())
    assert set(value) == {"VIP", "Potential", "Normal"}
    assert 0 < value["VIP"] < 0.05 * 2_000 < value["Potential"] < value["Normal"]

    # Lifecycle: every stage holds customers, each defined exactly by its facts.
    lifecycle = tiers["lifecycle"]
    stages = Counter(lifecycle.values())
    assert set(stages) == set(TEMPLATES["lifecycle"].check().tier_names)
    for customer_id, f in facts.items():
        stage = lifecycle[customer_id]
        assert (stage == "Prospect") == (f.n == 0), (customer_id, stage)
        if f.n == 0:
            continue
        idle = END - f.last
        assert (stage == "Churned") == (idle >= timedelta(days=180)), (customer_id, stage)
        if stage == "Declining":
            assert timedelta(days=90) <= idle < timedelta(days=180)
        if stage == "New":
            assert f.n == 1 and END - (f.registered_at or f.last) < timedelta(days=30)
        if stage in ("Growing", "Mature"):
            assert idle < timedelta(days=90)

    # RFM: customers with orders all get a segment, those without none; every segment occurs.
    rfm = tiers["rfm"]
    assert {c for c, tier in rfm.items() if tier is None} == {
        c for c, f in facts.items() if f.n == 0
    }
    assert set(rfm.values()) - {None} == set(TEMPLATES["rfm"].check().tier_names)
    assert all(facts[c].n == 1 for c, tier in rfm.items() if tier in ("New", "Promising"))

    # ABC: A is the smallest group yet brings at least 80 % of last year's revenue minus one
    # customer's spend (the one that crosses the line is B); A and B bring at most 95 %.
    abc = tiers["abc"]
    classes = Counter(abc.values())
    assert set(classes) == {"A", "B", "C"} and classes["A"] < classes["B"] < classes["C"]
    spend = {
        k: sum((f.year_spend for c, f in facts.items() if abc[c] == k), Decimal(0)) for k in "ABC"
    }
    total = sum(spend.values(), Decimal(0))
    assert spend["A"] <= Decimal("0.80") * total < spend["A"] + spend["B"]
    assert spend["A"] + spend["B"] <= Decimal("0.95") * total
    top_a = max(f.year_spend for c, f in facts.items() if abc[c] != "A")
    assert all(f.year_spend >= top_a for c, f in facts.items() if abc[c] == "A")
    assert all(f.year_spend == 0 for c, f in facts.items() if abc[c] == "C" and f.n == 0)

    # Predicted value: the top tenth of predicted 12-month value is Top, the next three tenths
    # High; customers without orders (no prediction) are Rest.
    clv = tiers["clv"]
    sizes = Counter(clv.values())
    with_predictions = len(predicted)
    assert model.repeat_customers >= 100
    assert abs(sizes["Top"] - 0.1 * with_predictions) <= 0.02 * with_predictions
    assert abs(sizes["High"] - 0.3 * with_predictions) <= 0.02 * with_predictions
    assert all(clv[c] == "Rest" for c, f in facts.items() if f.n == 0)
    lowest_top = min(predicted[c].clv[365] for c, tier in clv.items() if tier == "Top")  # type: ignore[index]
    assert all(
        predicted[c].clv[365] <= lowest_top  # type: ignore[index]
        for c, tier in clv.items()
        if tier == "High"
    )

    # Churn risk: only customers the model thinks likely gone; at risk below 0.5.
    risk = tiers["churn_risk"]
    at_risk = [c for c, tier in risk.items() if tier == "At risk"]
    slipping = [c for c, tier in risk.items() if tier == "Slipping"]
    assert at_risk and slipping
    assert all(predicted[c].p_alive < 0.5 for c in at_risk)
    assert all(0.5 <= predicted[c].p_alive < 0.8 for c in slipping)
    # Declining: each customer's tier follows from the two periods' spend, counted directly.
    declining = tiers["declining"]
    assert set(declining.values()) == set(TEMPLATES["declining"].check().tier_names)
    for customer_id, f in facts.items():
        now, before = f.spend_now, f.spend_before
        if before > 0 and now <= 0:
            expected = "Lapsed"
        elif now < Decimal("0.5") * before:
            expected = "Declining"
        elif now > Decimal("1.5") * before:
            expected = "Growing"
        elif now > 0:
            expected = "Steady"
        else:
            expected = "Inactive"
        assert declining[customer_id] == expected, (customer_id, now, before)


def test_a_file_s_definitions_travel_with_each_published_scheme() -> None:
    """Each scheme is published as a self-contained block: the definitions at the top of its
    file are written into it, so the stored version checks on its own."""
    from service.engine.schemes import parse_for_publishing

    source = (
        "# shared\n"
        "define aov = monetary(90 days) / frequency(90 days)  # basket\n"
        'scheme a "A" { tier Big when aov > 100\n tier Rest otherwise }\n'
        "scheme b {\n  define small = aov < 10\n  tier Small when small\n}\n"
    )
    draft = parse_for_publishing(source, "two.rules", None)
    assert draft.texts == [
        'scheme a "A" {\n'
        "  define aov = monetary(90 days) / frequency(90 days)\n"
        "  tier Big  when aov > 100\n"
        "  tier Rest otherwise\n"
        "}\n",
        "scheme b {\n"
        "  define aov = monetary(90 days) / frequency(90 days)\n"
        "  define small = aov < 10\n"
        "  tier Small when small\n"
        "}\n",
    ]
    for rule_text in draft.texts:
        assert not check_text(rule_text).warnings
