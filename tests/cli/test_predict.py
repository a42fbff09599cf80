"""`tierwise predict` as a user runs it: fit on the CDNOW sample imported as orders, validate
against its holdout period, and the refusal when there is too little to fit on."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import URL

from tests.support import cdnow_orders_csv, tierwise


def test_fit_prints_the_parameters_and_validate_the_holdout_comparison(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    orders = cdnow_orders_csv(tmp_path / "cdnow.csv")
    assert tierwise(database, "import", "orders", str(orders), "--tenant", tenant).returncode == 0

    fitted = tierwise(
        database, "predict", "fit", "--as-of", "1997-10-01", "--tenant", tenant, "--format", "json"
    )
    assert fitted.returncode == 0, fitted.stderr
    model = json.loads(fitted.stdout)
    assert set(model) == {
        "bgnbd",
        "gamma_gamma",
        "customers",
        "repeat_customers",
        "log_likelihood",
        "time_unit",
        "version",
        "as_of",
    }
    assert set(model["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert set(model["gamma_gamma"]) == {"p", "q", "v"}
    assert (model["customers"], model["repeat_customers"], model["time_unit"]) == (
        2357,
        946,
        "days",
    )
    assert round(model["bgnbd"]["alpha"], 1) == 30.8

    text = tierwise(database, "predict", "fit", "--as-of", "1997-10-01", "--tenant", tenant)
    assert text.returncode == 0, text.stderr
    assert "model 2 of tenant" in text.stdout
    assert "predictions of 2,357 customers replaced" in text.stdout

    validate = ("predict", "validate", "--calibration-end", "1997-10-01")
    holdout = ("--holdout-end", "1998-07-01", "--tenant", tenant)
    validated = tierwise(database, *validate, *holdout, "--format", "json")
    assert validated.returncode == 0, validated.stderr
    report = json.loads(validated.stdout)
    assert [b["repeat_purchases"] for b in report["buckets"]] == [*"0123456", "7+"]
    assert sum(b["customers"] for b in report["buckets"]) == 2357
    assert report["actual"] == 1882 and report["holdout_days"] == 273
    assert report["error"] == (report["predicted"] - 1882) / 1882

    table = tierwise(database, *validate, *holdout)
    assert table.returncode == 0, table.stderr
    assert "7+" in table.stdout and "1,882" in table.stdout and "total" in table.stdout


def test_too_few_repeat_buyers_is_refused_with_a_sentence(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,customer_id,ordered_at,amount\no1,a,2026-01-05,10\no2,a,2026-02-05,10\n"
    )
    assert tierwise(database, "import", "orders", str(orders), "--tenant", tenant).returncode == 0
    refused = tierwise(database, "predict", "fit", "--tenant", tenant)
    assert refused.returncode == 1
    assert "has 1 customers with a repeat purchase before" in refused.stderr
    assert "need at least 100" in refused.stderr and "Traceback" not in refused.stderr
    bad = tierwise(
        database,
        "predict",
        "validate",
        "--calibration-end",
        "1997-13-01",
        "--holdout-end",
        "1998-01-01",
        "--tenant",
        tenant,
    )
    assert bad.returncode == 1
    assert "--calibration-end: '1997-13-01' is not an ISO 8601 date" in bad.stderr
