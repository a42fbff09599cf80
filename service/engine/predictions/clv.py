"""Customer lifetime value over a horizon: expected purchases (BG/NBD) times expected value
(Gamma-Gamma), optionally discounted."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from service.engine.predictions.bgnbd import BgNbd
from service.engine.predictions.mle import Vector

PERIOD_DAYS = 30
"""Discounting steps: a month of 30 days, the catalog's fixed rate for a month."""

DAYS_PER_YEAR = 365


def clv(
    purchases: BgNbd,
    value: npt.ArrayLike,
    horizon_days: float,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    *,
    yearly_discount_rate: float = 0.0,
) -> Vector:
    """Expected net revenue of each customer in the next ``horizon_days``, shape (n,), in the
    currency of ``value`` (the Gamma-Gamma expected value, (n,)); x, t_x and T in days.

    CLV = E[value] · the discounted expected purchases of `purchases_by_horizon` (at d = 0:
    E[value] · E[Y(N) | x, t_x, T]).
    """
    _, discounted = purchases_by_horizon(
        purchases, [horizon_days], x, t_x, T, yearly_discount_rate=yearly_discount_rate
    )
    expected: Vector = np.asarray(value, dtype=np.float64) * discounted[0]
    return expected


def purchases_by_horizon(
    purchases: BgNbd,
    horizons: Sequence[float],
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    *,
    yearly_discount_rate: float = 0.0,
) -> tuple[Vector, Vector]:
    """Expected purchases in the next N days for each N of ``horizons`` (h of them), plain and
    discounted to today: two arrays of shape (h, n).

    Without discounting, E[Y(N) | x, t_x, T]. With a yearly rate d, the horizon is cut into
    30-day periods ending at t_k = min(30k, N), k = 1..⌈N/30⌉, and each period's expected
    purchases are discounted from its end:

        Σ_k (E[Y(t_k)] - E[Y(t_(k-1))]) / (1 + d)^(t_k / 365)

    Times the expected value, this is the margin-times-retention sum of Gupta et al. (2006),
    "Modeling customer lifetime value", Journal of Service Research 9(2), eq. (1),
    CLV = Σ_t m_t r_t / (1+i)^t, with each period's expected purchases from BG/NBD (as the
    `lifetimes` package's `customer_lifetime_value` does with monthly periods and a monthly
    rate). At d = 0 both forms are the same number. E[Y] is evaluated once per distinct
    period end, shared by the horizons.
    """
    ends = {float(h) for h in horizons}
    if yearly_discount_rate:
        ends |= {_end(k, h) for h in horizons for k in range(1, _periods(h) + 1)}
    at = {end: purchases.expected_purchases(end, x, t_x, T) for end in sorted(ends)}
    expected = np.stack([at[float(h)] for h in horizons])
    if not yearly_discount_rate:
        return expected, expected
    discounted = []
    for h in horizons:
        total = np.zeros_like(at[float(h)])
        before = np.zeros_like(total)
        for k in range(1, _periods(h) + 1):
            end = _end(k, h)
            total += (at[end] - before) / (1 + yearly_discount_rate) ** (end / DAYS_PER_YEAR)
            before = at[end]
        discounted.append(total)
    return expected, np.stack(discounted)


def _periods(horizon: float) -> int:
    return max(math.ceil(horizon / PERIOD_DAYS), 1)


def _end(k: int, horizon: float) -> float:
    return float(min(k * PERIOD_DAYS, horizon))
