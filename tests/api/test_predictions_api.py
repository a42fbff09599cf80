"""The prediction model over GraphQL: an admin refits it (audited), readers of reports see its
parameters and calibration, the customer's metrics carry the predictions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.auth import Role
from tests.api.support import codes, data, post
from tests.support import load_cdnow

OPERATIONS = Path(__file__).parents[2] / "graphql" / "operations"


async def test_an_admin_fits_the_model_and_a_viewer_reads_it(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    read = (OPERATIONS / "prediction_model.graphql").read_text()
    assert data(await post(engine, tenant, read)) == {"model": None}
    fit = (OPERATIONS / "fit_model.graphql").read_text()
    # Too few repeat buyers: refused in a sentence, nothing stored.
    refused = await post(engine, tenant, fit)
    assert codes(refused) == ["BAD_INPUT"]
    assert "no model was fitted" in refused["errors"][0]["message"]
    await load_cdnow(engine, tenant, tmp_path)
    assert codes(await post(engine, tenant, fit, role=Role.analyst)) == ["FORBIDDEN"]
    variables = {"asOf": "1997-10-01T00:00:00Z"}
    fitted = data(await post(engine, tenant, fit, variables))["fitModel"]
    assert fitted["predictions"] == 2357
    assert (fitted["model"]["version"], fitted["model"]["repeatCustomers"]) == (1, 946)
    assert abs(Decimal(fitted["model"]["parameters"]["alpha"]) - Decimal("30.757")) < 0.2
    model = data(await post(engine, tenant, read, role=Role.viewer))["model"]
    assert model["parameters"] == fitted["model"]["parameters"]
    calibration = model["calibration"]
    assert calibration["holdoutEnd"].startswith("1997-10-01")
    assert calibration["calibrationEnd"].startswith("1997-04-02")
    assert [b["repeatPurchases"] for b in calibration["buckets"]][-1] == "7+"
    assert calibration["actual"] > 0 and calibration["predicted"]
    # A period that cannot be validated fails alone: the model is still given.
    early = await post(engine, tenant, read, {"calibrationEnd": "1997-01-10T00:00:00Z"})
    assert codes(early) == ["BAD_INPUT"] and early["errors"][0]["path"] == ["model", "calibration"]
    assert early["data"]["model"]["parameters"] == fitted["model"]["parameters"]
    assert early["data"]["model"]["calibration"] is None
    log = data(await post(engine, tenant, '{ auditLog(action: "model.fit") { actor } }'))
    assert log == {"auditLog": [{"actor": "test"}]}


async def test_the_customer_card_and_explain_show_the_predictions_as_values(
    engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await load_cdnow(engine, tenant, tmp_path)
    card = '{ customer(id: "00004") { metrics { pAlive expectedOrders expectedOrderValue clv } } }'
    before = data(await post(engine, tenant, card))["customer"]["metrics"]
    assert set(before.values()) == {None}  # no model yet
    fit = (OPERATIONS / "fit_model.graphql").read_text()
    data(await post(engine, tenant, fit, {"asOf": "1997-10-01T00:00:00Z"}))
    metrics = data(await post(engine, tenant, card))["customer"]["metrics"]
    assert (metrics["pAlive"], metrics["expectedOrders"]) == ("0.722744", "1.544733")
    assert len(metrics["clv"].split(".")[1]) == 4
    rules = (
        "tier Lapsing when p_alive < 0.5\n"
        "tier Valuable when clv(365 days) > 10\n"
        "tier Rest otherwise"
    )
    published = await post(
        engine,
        tenant,
        'mutation ($s: String!) { publishScheme(key: "risk", source: $s) { changed } }',
        {"s": rules},
    )
    assert data(published) == {"publishScheme": {"changed": True}}
    explained = data(
        await post(
            engine,
            tenant,
            '{ explain(customer: "00004", scheme: "risk") '
            "{ tier tiers { name clause { metric actual } } } }",
        )
    )["explain"]
    lapsing, valuable, _ = explained["tiers"]
    assert lapsing["clause"] == {"metric": "p_alive", "actual": "0.722744"}
    assert valuable["clause"] == {"metric": "clv(365 days)", "actual": metrics["clv"]}
    assert explained["tier"] == ("Valuable" if float(metrics["clv"]) > 10 else "Rest")
