"""How good the predictions are: fit on a calibration period, predict a holdout period, and
compare with what the customers did (Fader, Hardie and Lee 2005, section 5, figure 3: mean
holdout purchases per number of calibration repeat purchases, predicted against actual).
Stores nothing: the tenant's current model is not touched."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.engine.predictions import bgnbd, purchases
from service.engine.predictions.mle import Vector
from service.engine.predictions.tenant import check_enough, read_summary
from service.errors import UserError

TOP_BUCKET = 7
"""Customers with this many calibration repeat purchases or more share the last row (7+)."""


@dataclass(frozen=True)
class Bucket:
    """Customers with ``repeat_purchases`` calibration repeat purchases (the last: or more)."""

    repeat_purchases: int
    customers: int
    predicted: float
    """Mean predicted purchase occasions in the holdout period."""
    actual: float
    """Mean actual purchase occasions in the holdout period."""

    @property
    def label(self) -> str:
        """The row's name: the number of repeat purchases, "7+" for the last."""
        top = self.repeat_purchases == TOP_BUCKET
        return f"{TOP_BUCKET}+" if top else str(self.repeat_purchases)


@dataclass(frozen=True)
class Validation:
    calibration_end: dt.datetime
    holdout_end: dt.datetime
    holdout_days: float
    model: bgnbd.Fit
    buckets: tuple[Bucket, ...]
    predicted: float
    """Total predicted purchase occasions of the calibration customers in the holdout period."""
    actual: int

    @property
    def error(self) -> float:
        """(predicted - actual) / actual of the totals; inf when nobody bought in the holdout."""
        return (self.predicted - self.actual) / self.actual if self.actual else float("inf")


async def validate(
    connection: AsyncConnection,
    tenant: str,
    calibration_end: dt.datetime,
    holdout_end: dt.datetime,
) -> Validation:
    """Fit BG/NBD on the purchases before ``calibration_end`` and compare, for the customers
    with one, each one's expected purchase occasions in ``[calibration_end, holdout_end)``
    with how many they had.

    Raises UserError when the holdout does not end after the calibration, and NotEnoughData
    with too few repeat buyers in the calibration period.
    """
    if holdout_end <= calibration_end:
        raise UserError(
            f"--holdout-end ({holdout_end.isoformat()}) must be later than --calibration-end "
            f"({calibration_end.isoformat()})"
        )
    summary = await read_summary(connection, tenant, calibration_end)
    check_enough(
        tenant, calibration_end, summary.repeat_customers, "customers with a repeat purchase"
    )
    calibrated = purchases.purchases(tenant, before=calibration_end)
    rows = await connection.execute(
        purchases.holdout_occasions(
            tenant, calibration_end, holdout_end, select(calibrated.c.customer_id)
        )
    )
    held = {customer_id: occasions for customer_id, occasions in rows}
    actual = np.array([held.get(int(c), 0) for c in summary.customer_id], dtype=np.float64)
    days = (holdout_end - calibration_end) / dt.timedelta(days=1)
    fit = await asyncio.to_thread(bgnbd.fit, summary.x, summary.t_x, summary.T)
    predicted = fit.model.expected_purchases(days, summary.x, summary.t_x, summary.T)
    return Validation(
        calibration_end,
        holdout_end,
        days,
        fit,
        _buckets(summary.x, predicted, actual),
        float(predicted.sum()),
        int(actual.sum()),
    )


def _buckets(x: Vector, predicted: Vector, actual: Vector) -> tuple[Bucket, ...]:
    bucket = np.minimum(x, TOP_BUCKET).astype(np.int64)
    rows = []
    for k in range(TOP_BUCKET + 1):
        members = bucket == k
        count = int(members.sum())
        if count:
            rows.append(
                Bucket(k, count, float(predicted[members].mean()), float(actual[members].mean()))
            )
    return tuple(rows)
