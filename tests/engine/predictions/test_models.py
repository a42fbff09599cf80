"""The BG/NBD and Gamma-Gamma models against the published fits and against closed forms
computed here independently (plain Python, the hypergeometric function as its power series in
the untransformed form of the paper)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from service.engine.predictions import bgnbd, gamma_gamma
from service.engine.predictions.bgnbd import BgNbd
from service.engine.predictions.clv import clv
from service.engine.predictions.gamma_gamma import GammaGamma
from service.engine.predictions.mle import compress
from tests.support import CDNOW

PUBLISHED_BGNBD = {"r": 0.2426, "alpha": 4.4135, "a": 0.7929, "b": 2.4258}
PUBLISHED_GAMMA_GAMMA = {"p": 6.2488, "q": 3.7446, "v": 15.4477}

# lifetimes 0.11.3 (numpy 2.4, scipy 1.17, pandas 2.3) on the CDNOW sample summarised in days
# as of 1997-10-01: its fit, and its predictions for customers 00004, 00021 and 00050, whose
# (x, t_x, T, mean repeat value) are (2, 213, 273, 22.345), (1, 12, 273, 11.77), (0, 0, 273, -).
LIFETIMES_DAYS = BgNbd(
    0.24174192748729398, 30.756907723971235, 0.8144793953942817, 2.477164908908836
)
LIFETIMES_GAMMA_GAMMA = GammaGamma(6.249572277634129, 3.744224674758558, 15.44352101836804)
LIFETIMES_CUSTOMERS = [(2, 213, 273, 22.345), (1, 12, 273, 11.77), (0, 0, 273, 0.0)]
LIFETIMES_P_ALIVE = [0.7227440424362925, 0.21042612478439263, 1.0]
LIFETIMES_EXPECTED_365 = [1.5447333888885606, 0.2569681609673638, 0.25057754245910746]
LIFETIMES_VALUE = [24.65391871323588, 18.91001847534048, 35.17037133045402]


def _weekly(name: str, *columns: str) -> list[np.ndarray]:
    with (CDNOW / name).open() as file:
        rows = list(csv.DictReader(file))
    return [np.array([float(row[c]) for row in rows]) for c in columns]


def _close(actual: float, expected: float, tolerance: float) -> bool:
    return abs(actual - expected) <= tolerance * abs(expected)


def test_bgnbd_reproduces_the_published_weekly_fit() -> None:
    x, t_x, T = _weekly("cdnow_customers_summary.csv", "frequency", "recency", "T")
    fit = bgnbd.fit(x, t_x, T)
    fitted = vars(fit.model)
    assert all(_close(fitted[k], v, 1e-3) for k, v in PUBLISHED_BGNBD.items()), fitted
    # Fader, Hardie and Lee (2005) report the maximised log-likelihood, -9582.4.
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_gamma_gamma_reproduces_the_published_fit_on_the_repeat_buyers() -> None:
    x, m = _weekly("cdnow_customers_summary_with_transactions.csv", "x", "zbar")
    fit = gamma_gamma.fit(x, m)
    fitted = vars(fit.model)
    assert fit.customers == 946
    assert all(_close(fitted[k], v, 1e-3) for k, v in PUBLISHED_GAMMA_GAMMA.items()), fitted


def test_a_fit_counts_customers_not_distinct_summaries() -> None:
    x, t_x, T = _weekly("cdnow_customers_summary.csv", "frequency", "recency", "T")
    once = bgnbd.fit(x, t_x, T)
    twice = bgnbd.fit(np.tile(x, 2), np.tile(t_x, 2), np.tile(T, 2))
    assert twice.log_likelihood == pytest.approx(2 * once.log_likelihood, rel=1e-9)
    assert vars(twice.model) == pytest.approx(vars(once.model), rel=1e-5)


def test_compression_keeps_every_customer() -> None:
    x, t_x, T = _weekly("cdnow_customers_summary.csv", "frequency", "recency", "T")
    groups = compress(x, t_x, T)
    assert len(groups.rows) < len(x) and groups.weights.sum() == len(x)
    assert (groups.rows[groups.inverse] == np.column_stack([x, t_x, T])).all()


def test_where_nobody_drops_out_the_fit_says_everybody_is_alive() -> None:
    # Everybody bought until the very end: the likelihood is highest with no dropout at all
    # (a -> 0), approached within the optimiser's bounds.
    x = np.random.default_rng(1).integers(5, 15, 300).astype(float)
    model = bgnbd.fit(x, np.full(300, 100.0), np.full(300, 100.0)).model
    assert model.a < 1e-4
    assert model.p_alive(x, np.full(300, 100.0), np.full(300, 100.0)) == pytest.approx(1.0)


def _hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """The Gauss hypergeometric series, summed until its terms stop counting (|z| < 1)."""
    term = total = 1.0
    k = 0
    while k < 20 or abs(term) > 1e-17 * abs(total):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        k += 1
    return total


def _p_alive(m: BgNbd, x: float, t_x: float, T: float) -> float:
    odds = (m.a / (m.b + x - 1)) * ((m.alpha + T) / (m.alpha + t_x)) ** (m.r + x) if x else 0.0
    return 1 / (1 + odds)


def _expected(m: BgNbd, t: float, x: float, t_x: float, T: float) -> float:
    """Fader, Hardie and Lee (2005), eq. (10), as printed."""
    z = t / (m.alpha + T + t)
    power = ((m.alpha + T) / (m.alpha + T + t)) ** (m.r + x)
    bracket = 1 - power * _hyp2f1(m.r + x, m.b + x, m.a + m.b + x - 1, z)
    return (m.a + m.b + x - 1) / (m.a - 1) * bracket * _p_alive(m, x, t_x, T)


# Weekly CDNOW customers, and a few far from them: many purchases, long histories and horizons.
CUSTOMERS = [
    (2, 30.43, 38.86),
    (1, 1.71, 38.86),
    (0, 0.0, 38.86),
    (14, 35.0, 38.86),
    (5, 8.0, 20.0),
]
FAR = [(40, 2900.0, 3000.0), (300, 2990.0, 3000.0), (3, 100.0, 3000.0), (0, 0.0, 0.0)]


@pytest.mark.parametrize(
    ("model", "customers", "horizon"),
    [
        (BgNbd(**PUBLISHED_BGNBD), CUSTOMERS, 39.0),
        (BgNbd(**PUBLISHED_BGNBD), CUSTOMERS, 1.0),
        (LIFETIMES_DAYS, FAR, 3650.0),
    ],
)
def test_predictions_equal_the_closed_forms(
    model: BgNbd, customers: list[tuple[float, float, float]], horizon: float
) -> None:
    x, t_x, T = (np.array(column, dtype=float) for column in zip(*customers, strict=True))
    alive = model.p_alive(x, t_x, T)
    expected = model.expected_purchases(horizon, x, t_x, T)
    for i, customer in enumerate(customers):
        assert alive[i] == pytest.approx(_p_alive(model, *customer), rel=1e-12)
        assert expected[i] == pytest.approx(_expected(model, horizon, *customer), rel=1e-9)
        assert math.isfinite(expected[i]) and expected[i] >= 0


def test_predictions_equal_those_of_the_lifetimes_package() -> None:
    x, t_x, T, m = (
        np.array(column, dtype=float) for column in zip(*LIFETIMES_CUSTOMERS, strict=True)
    )
    assert LIFETIMES_DAYS.p_alive(x, t_x, T) == pytest.approx(LIFETIMES_P_ALIVE, rel=1e-12)
    assert LIFETIMES_DAYS.expected_purchases(365, x, t_x, T) == pytest.approx(
        LIFETIMES_EXPECTED_365, rel=1e-10
    )
    assert LIFETIMES_GAMMA_GAMMA.expected_value(x, m) == pytest.approx(LIFETIMES_VALUE, rel=1e-12)


def test_expected_value_shrinks_a_customers_mean_towards_the_population_mean() -> None:
    model = GammaGamma(**PUBLISHED_GAMMA_GAMMA)
    population = model.p * model.v / (model.q - 1)
    x = np.array([0, 1, 4, 4, 4])
    m = np.array([0.0, 50.0, 50.0, 0.0, -20.0])
    value = model.expected_value(x, m)
    assert value[0] == pytest.approx(population)
    # The more repeat purchases, the more the customer's own mean counts.
    assert population < value[1] < value[2] < 50
    # Zero-value or refunded repeat orders: expected to spend less than the population, and a
    # negative mean counts as nothing, never as negative spend.
    assert 0 < value[3] == value[4] < population
    assert np.isnan(GammaGamma(2.0, 0.9, 10.0).expected_value(x, m)).all()


def test_clv_is_expected_purchases_times_value_discounted_by_period() -> None:
    model = LIFETIMES_DAYS
    x, t_x, T, m = (
        np.array(column, dtype=float) for column in zip(*LIFETIMES_CUSTOMERS, strict=True)
    )
    value = LIFETIMES_GAMMA_GAMMA.expected_value(x, m)
    plain = clv(model, value, 365, x, t_x, T)
    assert plain == pytest.approx(value * model.expected_purchases(365, x, t_x, T), rel=1e-12)
    discounted = clv(model, value, 365, x, t_x, T, yearly_discount_rate=0.1)
    ends = [*range(30, 365, 30), 365]
    by_hand = sum(
        (model.expected_purchases(end, x, t_x, T) - model.expected_purchases(start, x, t_x, T))
        / 1.1 ** (end / 365)
        for start, end in zip([0, *ends[:-1]], ends, strict=True)
    )
    assert discounted == pytest.approx(value * by_hand, rel=1e-12)
    # Everything within a year is discounted by at most a year's rate.
    assert np.all((plain / 1.1 < discounted) & (discounted < plain))
