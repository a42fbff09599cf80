"""Fitting a tenant's models and keeping every customer's predictions from the current one.

A fit reads the per-customer summary from Postgres (`purchases.summary`, set-based), fits
BG/NBD and Gamma-Gamma in process on the compressed summaries, stores the parameters as the
tenant's next model version and replaces the tenant's `customer_predictions` with the new
model's, all in one transaction: readers see the previous model and predictions until it
commits, and a failed fit changes nothing.

Predictions are computed in numpy, once per distinct (x, t_x, T) for the BG/NBD quantities,
and written back with COPY: the conditional expectation needs the Gauss hypergeometric function,
which Postgres does not have, and a PL/pgSQL series for it measured far slower than numpy plus
COPY (docs/predictions.md). They are stored as double precision rounded to a few decimals:
converting a million rows of floats to numeric inside Postgres took longer than everything else
together.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Row, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dsl.catalog import CURRENCY_SCALE, PREDICTION_HORIZON_DAYS, PROBABILITY_SCALE
from dsl.evaluator import Prediction
from service.access import audit
from service.db import locks
from service.db.database import analyze
from service.db.tables import customer_predictions, prediction_models
from service.engine.predictions import bgnbd, gamma_gamma, purchases
from service.engine.predictions.bgnbd import BgNbd
from service.engine.predictions.clv import purchases_by_horizon
from service.engine.predictions.gamma_gamma import GammaGamma
from service.engine.predictions.mle import Vector, compress
from service.engine.sources import AFFECTED
from service.errors import UserError

MIN_REPEAT_CUSTOMERS = 100
"""Fewer customers with a repeat purchase than this, and a fit is refused."""

DEFAULT_HORIZON_DAYS = PREDICTION_HORIZON_DAYS
"""The horizons `customer_predictions` holds expected orders and CLV for: always the
catalog's (the metrics `expected_orders(N days)` and `clv(N days)` read them), and any others
a fit is asked for."""

# Decimal places p_alive and expected orders (PROBABILITY_SCALE) and values in currency
# (CURRENCY_SCALE, as order amounts) are rounded to when stored: the catalog's, so the metrics
# read the stored digits.


@dataclass(frozen=True)
class Summary:
    """Per-customer summaries, each array of shape (n,): customer_id, x (repeat occasions),
    t_x and T (days), m (mean net repeat value in currency, NaN for x = 0)."""

    customer_id: npt.NDArray[np.int64]
    x: Vector
    t_x: Vector
    T: Vector
    m: Vector

    @property
    def repeat_customers(self) -> int:
        return int(np.count_nonzero(self.x > 0))


async def read_summary(
    connection: AsyncConnection,
    tenant: str,
    as_of: dt.datetime,
    *,
    customer_ids: purchases.CustomerIds = None,
) -> Summary:
    """`purchases.summary` of ``tenant`` at ``as_of``, as arrays."""
    query = purchases.summary(tenant, as_of, customer_ids=customer_ids).order_by("customer_id")
    rows = (await connection.execute(query)).all()
    ids, x, t_x, T, m = zip(*rows, strict=True) if rows else ((),) * 5
    return Summary(
        np.array(ids, dtype=np.int64),
        np.array(x, dtype=np.float64),
        np.array(t_x, dtype=np.float64),
        np.array(T, dtype=np.float64),
        np.array(m, dtype=np.float64),  # None (no repeat occasion) becomes NaN
    )


@dataclass(frozen=True)
class Model:
    """One stored fit of a tenant: BG/NBD in days, Gamma-Gamma in the tenant's currency."""

    version: int
    as_of: dt.datetime
    bgnbd: BgNbd
    gamma_gamma: GammaGamma
    customers: int
    repeat_customers: int
    log_likelihood: float
    gamma_gamma_customers: int
    gamma_gamma_log_likelihood: float
    horizon_days: tuple[int, ...]
    yearly_discount_rate: Decimal
    fitted_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        """The parameters in the shape `tierwise predict fit --format json` prints."""
        return {
            "bgnbd": {
                "r": self.bgnbd.r,
                "alpha": self.bgnbd.alpha,
                "a": self.bgnbd.a,
                "b": self.bgnbd.b,
            },
            "gamma_gamma": {
                "p": self.gamma_gamma.p,
                "q": self.gamma_gamma.q,
                "v": self.gamma_gamma.v,
            },
            "customers": self.customers,
            "repeat_customers": self.repeat_customers,
            "log_likelihood": self.log_likelihood,
            "time_unit": "days",
            "version": self.version,
            "as_of": self.as_of.isoformat(),
        }


def _model(row: Row[Any]) -> Model:
    return Model(
        version=row.version,
        as_of=row.as_of,
        bgnbd=BgNbd(row.r, row.alpha, row.a, row.b),
        gamma_gamma=GammaGamma(row.p, row.q, row.v),
        customers=row.customers,
        repeat_customers=row.repeat_customers,
        log_likelihood=row.log_likelihood,
        gamma_gamma_customers=row.gamma_gamma_customers,
        gamma_gamma_log_likelihood=row.gamma_gamma_log_likelihood,
        horizon_days=tuple(row.horizon_days),
        yearly_discount_rate=row.yearly_discount_rate,
        fitted_at=row.fitted_at,
    )


async def current_model(
    connection: AsyncConnection, tenant: str, *, fitted_as_of: dt.datetime | None = None
) -> Model | None:
    """The tenant's current model (its highest version), or with ``fitted_as_of`` the newest
    one fitted as of that time or earlier (what a backtest may use); None without one."""
    query = select(prediction_models).where(prediction_models.c.tenant_id == tenant)
    if fitted_as_of is not None:
        query = query.where(prediction_models.c.as_of <= fitted_as_of)
    row = (
        await connection.execute(query.order_by(prediction_models.c.version.desc()).limit(1))
    ).first()
    return None if row is None else _model(row)


class NotEnoughData(UserError):
    """Too few repeat buyers to fit the models."""


def check_enough(tenant: str, as_of: dt.datetime, count: int, what: str) -> None:
    """Raise NotEnoughData, saying so in a sentence, when ``count`` customers (``what``,
    e.g. "customers with a repeat purchase") are fewer than `MIN_REPEAT_CUSTOMERS`."""
    if count < MIN_REPEAT_CUSTOMERS:
        raise NotEnoughData(
            f"tenant {tenant!r} has {count} {what} before {as_of.isoformat()}; the models need "
            f"at least {MIN_REPEAT_CUSTOMERS} to be fitted, so no model was fitted"
        )


@dataclass(frozen=True)
class _Fitted:
    bgnbd: bgnbd.Fit
    gamma_gamma: gamma_gamma.Fit


def _fit(summary: Summary) -> _Fitted:
    return _Fitted(
        bgnbd.fit(summary.x, summary.t_x, summary.T),
        gamma_gamma.fit(summary.x, np.nan_to_num(summary.m, nan=0.0)),
    )


async def fit_tenant(
    connection: AsyncConnection,
    tenant: str,
    as_of: dt.datetime,
    *,
    actor: audit.Actor = audit.SERVICE,
    horizon_days: Sequence[int] | None = None,
    yearly_discount_rate: Decimal = Decimal(0),
) -> tuple[Model, int]:
    """Fit ``tenant``'s models on the purchases before ``as_of``, store them as its next
    version and replace every customer's predictions; return the model and how many customers
    got predictions. ``horizon_days`` (default `DEFAULT_HORIZON_DAYS`) are the horizons to keep
    expected orders and CLV for; CLV is discounted at ``yearly_discount_rate``.

    Fits of one tenant take turns (an advisory lock); each is audited (``model.fit``, by
    ``actor``, with the previous and the new parameters). Raises NotEnoughData (nothing written)
    with fewer than `MIN_REPEAT_CUSTOMERS` customers with a repeat purchase, or fewer than that
    with a positive mean repeat value (Gamma-Gamma's customers), and FitError when an optimiser
    does not converge.
    """
    await locks.acquire(connection, locks.Purpose.predict, tenant)
    summary = await read_summary(connection, tenant, as_of)
    check_enough(tenant, as_of, summary.repeat_customers, "customers with a repeat purchase")
    valued = int(np.count_nonzero((summary.x > 0) & (summary.m > 0)))
    check_enough(tenant, as_of, valued, "customers with a positive mean repeat value")
    fitted = await asyncio.to_thread(_fit, summary)
    previous = await current_model(connection, tenant)
    version = 1 if previous is None else previous.version + 1
    stored = (
        await connection.execute(
            insert(prediction_models)
            .values(
                tenant_id=tenant,
                version=version,
                as_of=as_of,
                r=fitted.bgnbd.model.r,
                alpha=fitted.bgnbd.model.alpha,
                a=fitted.bgnbd.model.a,
                b=fitted.bgnbd.model.b,
                p=fitted.gamma_gamma.model.p,
                q=fitted.gamma_gamma.model.q,
                v=fitted.gamma_gamma.model.v,
                customers=len(summary.x),
                repeat_customers=summary.repeat_customers,
                log_likelihood=fitted.bgnbd.log_likelihood,
                gamma_gamma_customers=fitted.gamma_gamma.customers,
                gamma_gamma_log_likelihood=fitted.gamma_gamma.log_likelihood,
                horizon_days=sorted(set(horizon_days or ()) | set(DEFAULT_HORIZON_DAYS)),
                yearly_discount_rate=yearly_discount_rate,
            )
            .returning(prediction_models)
        )
    ).one()
    model = _model(stored)
    await audit.record(
        connection,
        tenant,
        actor,
        "model.fit",
        f"model:{model.version}",
        before=None if previous is None else previous.as_json(),
        after=model.as_json(),
    )
    await connection.execute(
        customer_predictions.delete().where(customer_predictions.c.tenant_id == tenant)
    )
    written = await write_predictions(connection, tenant, model, summary, as_of)
    # Every row was rewritten: statistics now, for the runs that join them next.
    await analyze(connection, "customer_predictions")
    return model, written


@dataclass(frozen=True)
class Predictions:
    """Predictions for the customers of a `Summary`, each of shape (n,) or (h, n) over the
    model's horizons: p_alive, expected_order_value (currency; NaN when q <= 1),
    expected_orders (h, n) and clv (h, n, currency)."""

    p_alive: Vector
    expected_order_value: Vector
    expected_orders: Vector
    clv: Vector


def predict(model: Model, summary: Summary) -> Predictions:
    """``model``'s predictions for ``summary``'s customers; the BG/NBD quantities are computed
    once per distinct (x, t_x, T) and spread to the customers that share it."""
    groups = compress(summary.x, summary.t_x, summary.T)
    gx, gt_x, gT = groups.column(0), groups.column(1), groups.column(2)
    rate = float(model.yearly_discount_rate)
    p_alive = model.bgnbd.p_alive(gx, gt_x, gT)[groups.inverse]
    value = model.gamma_gamma.expected_value(summary.x, np.nan_to_num(summary.m, nan=0.0))
    expected, discounted = purchases_by_horizon(
        model.bgnbd, model.horizon_days, gx, gt_x, gT, yearly_discount_rate=rate
    )
    expected, discounted = expected[:, groups.inverse], discounted[:, groups.inverse]
    return Predictions(p_alive, value, expected, discounted * value)


def prediction_facts(model: Model, summary: Summary) -> dict[int, Prediction]:
    """``model``'s predictions for ``summary``'s customers as the in-process evaluator takes
    them (`dsl.Prediction`), by customer id: the numbers `write_predictions` stores, rounded
    the same way."""
    predicted = predict(model, summary)
    p_alive = np.round(predicted.p_alive, PROBABILITY_SCALE)
    value = np.round(predicted.expected_order_value, CURRENCY_SCALE)
    expected = np.round(predicted.expected_orders, PROBABILITY_SCALE)
    clv = np.round(predicted.clv, CURRENCY_SCALE)
    out: dict[int, Prediction] = {}
    for i, customer_id in enumerate(summary.customer_id.tolist()):
        known = not np.isnan(value[i])
        out[customer_id] = Prediction(
            p_alive=float(p_alive[i]),
            expected_order_value=float(value[i]) if known else None,
            expected_orders={h: float(expected[k, i]) for k, h in enumerate(model.horizon_days)},
            clv={h: float(clv[k, i]) for k, h in enumerate(model.horizon_days)} if known else None,
        )
    return out


_STAGE = "prediction_stage"
_COLUMNS = (
    "customer_id",
    "repeat_purchases",
    "purchase_span_days",
    "observed_days",
    "mean_repeat_value",
    "p_alive",
    "expected_order_value",
    "expected_orders",
    "clv",
)


def _rows(summary: Summary, predicted: Predictions) -> list[tuple[object, ...]]:
    """The `_COLUMNS` of `customer_predictions`, one tuple per customer, rounded
    (`PROBABILITY_SCALE`, `CURRENCY_SCALE`; half to even), ready for COPY. A missing value is
    NaN here (no Python loop over customers), NULL once written."""
    return list(
        zip(
            summary.customer_id.tolist(),
            summary.x.astype(np.int64).tolist(),
            summary.t_x.astype(np.int64).tolist(),
            summary.T.astype(np.int64).tolist(),
            np.round(summary.m, CURRENCY_SCALE).tolist(),
            np.round(predicted.p_alive, PROBABILITY_SCALE).tolist(),
            np.round(predicted.expected_order_value, CURRENCY_SCALE).tolist(),
            np.round(predicted.expected_orders, PROBABILITY_SCALE).T.tolist(),
            np.round(predicted.clv, CURRENCY_SCALE).T.tolist(),
            strict=True,
        )
    )


async def write_predictions(
    connection: AsyncConnection,
    tenant: str,
    model: Model,
    summary: Summary,
    as_of: dt.datetime,
) -> int:
    """Upsert ``model``'s predictions for ``summary``'s customers (summarised at ``as_of``)
    into `customer_predictions`: computed in numpy, rounded (`PROBABILITY_SCALE`,
    `CURRENCY_SCALE`), COPYed into a temporary table (COPY cannot write a table under
    row-level security) and upserted from it in one statement. Returns the number of customers
    written."""
    if len(summary.x) == 0:
        return 0
    rows = await asyncio.to_thread(lambda: _rows(summary, predict(model, summary)))
    await connection.execute(
        text(
            f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS "
            f"SELECT {', '.join(_COLUMNS)} FROM customer_predictions WITH NO DATA"
        )
    )
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.copy_records_to_table(_STAGE, records=rows, columns=_COLUMNS)
    columns = ", ".join(_COLUMNS)
    updates = ", ".join(
        f"{name} = EXCLUDED.{name}" for name in ("model_version", "as_of", *_COLUMNS[1:])
    )
    # NaN, the arrays' way of saying "no value", becomes NULL (Postgres: NaN = NaN).
    result = await connection.execute(
        text(
            f"""
            INSERT INTO customer_predictions (tenant_id, model_version, as_of, {columns})
            SELECT :tenant, :version, :as_of, customer_id, repeat_purchases,
                   purchase_span_days, observed_days, nullif(mean_repeat_value, 'NaN'),
                   p_alive, nullif(expected_order_value, 'NaN'), expected_orders,
                   CASE WHEN expected_order_value <> 'NaN' THEN clv END
            FROM {_STAGE}
            ON CONFLICT (tenant_id, customer_id) DO UPDATE SET {updates}
            """
        ),
        {"tenant": tenant, "version": model.version, "as_of": as_of},
    )
    await connection.execute(text(f"DROP TABLE {_STAGE}"))
    return int(result.rowcount)


async def refresh_predictions(connection: AsyncConnection, tenant: str, as_of: dt.datetime) -> int:
    """Recompute the predictions of the customers in ``affected_customers`` (what ingest and
    deletions changed) with the tenant's current model, summarised at ``as_of``: their rows are
    replaced, and removed for those left without purchases. Nothing happens without a model.
    Returns the number of customers written."""
    model = await current_model(connection, tenant)
    if model is None:
        return 0
    await connection.execute(
        customer_predictions.delete().where(
            customer_predictions.c.tenant_id == tenant,
            customer_predictions.c.customer_id.in_(AFFECTED),
        )
    )
    summary = await read_summary(connection, tenant, as_of, customer_ids=AFFECTED)
    return await write_predictions(connection, tenant, model, summary, as_of)


async def stage_predictions_then(
    connection: AsyncConnection, tenant: str, as_of: dt.datetime
) -> Model | None:
    """Fill `sources.PREDICTIONS_THEN` (created empty by the caller) for a backtest at
    ``as_of`` with the predictions of the newest model fitted as of that time (fitted on
    purchases before a time at or before ``as_of``), computed from each customer's purchases
    before ``as_of``. Returns that model; None when none was fitted by then (the prediction
    metrics are then null)."""
    model = await current_model(connection, tenant, fitted_as_of=as_of)
    if model is None:
        return None
    summary = await read_summary(connection, tenant, as_of)
    if len(summary.x) == 0:
        return model
    horizons = list(model.horizon_days)

    def rows() -> list[tuple[object, ...]]:
        return [
            (
                customer_id,
                fact.p_alive,
                fact.expected_order_value,
                [fact.expected_orders[h] for h in horizons],
                None if fact.clv is None else [fact.clv[h] for h in horizons],
                horizons,
            )
            for customer_id, fact in prediction_facts(model, summary).items()
        ]

    records = await asyncio.to_thread(rows)
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    await driver.copy_records_to_table(
        "predictions_then",
        records=records,
        columns=(
            "customer_id",
            "p_alive",
            "expected_order_value",
            "expected_orders",
            "clv",
            "horizon_days",
        ),
    )
    return model
