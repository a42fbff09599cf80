"""Customer lifetime value over a horizon: expected purchases (BG/NBD) times expected value
(Gamma-Gamma), optionally discounted."""

from __future__ import annotations

import math

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

    CLV = E[value] · `discounted_purchases` (at d = 0: E[value] · E[Y(N) | x, t_x, T]).
    """
    expected: Vector = np.asarray(value, dtype=np.float64) * discounted_purchases(
        purchases, horizon_days, x, t_x, T, yearly_discount_rate=yearly_discount_rate
    )
    return expected


def discounted_purchases(
    purchases: BgNbd,
    horizon_days: float,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    *,
    yearly_discount_rate: float = 0.0,
) -> Vector:
    """Expected purchases in the next ``horizon_days``, each discounted to today, shape (n,).

    Without discounting, E[Y(N) | x, t_x, T]. With a yearly rate d, the horizon is cut into
    30-day periods ending at t_k = min(30k, N), k = 1..⌈N/30⌉, and each period's expected
    purchases are discounted from its end:

        Σ_k (E[Y(t_k)] - E[Y(t_(k-1))]) / (1 + d)^(t_k / 365)

    Times the expected value, this is the margin-times-retention sum of Gupta et al. (2006),
    "Modeling customer lifetime value", Journal of Service Research 9(2), eq. (1),
    CLV = Σ_t m_t r_t / (1+i)^t, with each period's expected purchases from BG/NBD (as the
    `lifetimes` package's `customer_lifetime_value` does with monthly periods and a monthly
    rate). At d = 0 both forms are the same number.
    """
    if yearly_discount_rate == 0:
        return purchases.expected_purchases(horizon_days, x, t_x, T)
    periods = max(math.ceil(horizon_days / PERIOD_DAYS), 1)
    total: Vector = np.zeros(np.shape(np.asarray(x, dtype=np.float64)))
    before: Vector = np.zeros_like(total)
    for k in range(1, periods + 1):
        end = min(k * PERIOD_DAYS, horizon_days)
        upto = purchases.expected_purchases(end, x, t_x, T)
        total += (upto - before) / (1 + yearly_discount_rate) ** (end / DAYS_PER_YEAR)
        before = upto
    return total
