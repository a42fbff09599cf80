"""The prediction model over GraphQL: an admin refits it (audited), readers of reports see its
parameters and calibration, the customer's metrics carry the predictions."""

from __future__ import annotations

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
    assert abs(fitted["model"]["parameters"]["alpha"] - 30.757) < 0.2
    model = data(await post(engine, tenant, read, role=Role.viewer))["model"]
    assert model["parameters"] == fitted["model"]["parameters"]
    calibration = model["calibration"]
    assert calibration["holdoutEnd"].startswith("1997-10-01")
    assert calibration["calibrationEnd"].startswith("1997-04-02")
    assert [b["repeatPurchases"] for b in calibration["buckets"]][-1] == "7+"
    assert calibration["actual"] > 0 and calibration["predicted"]
    log = data(await post(engine, tenant, '{ auditLog(action: "model.fit") { actor } }'))
    assert log == {"auditLog": [{"actor": "test"}]}
