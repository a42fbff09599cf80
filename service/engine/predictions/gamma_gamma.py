"""The Gamma-Gamma model of monetary value (Fader and Hardie 2013, "The Gamma-Gamma model of
monetary value", research note 025; first in Fader, Hardie and Lee 2005, "RFM and CLV: using
iso-value curves for customer base analysis", Journal of Marketing Research 42(4)).

A customer's purchase values are Gamma(p, ν) (shape p, rate ν) around their own mean p/ν;
across customers ν ~ Gamma(q, γ) (shape q, rate γ; ``v`` here, as the `lifetimes` package
names it). The model sees a customer through x, the number of repeat purchases, and z̄ (``m``),
their mean value, in the tenant's currency; γ is in that currency, p and q have none. It is
fitted on customers with x > 0 and z̄ > 0 only.

Arrays are numpy float64 of shape (n,), one element per customer, broadcast together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import digamma, gammaln

from service.engine.predictions.mle import Vector, compress, maximise


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma parameters: p (shape of a customer's values), q and v (shape and rate, v in
    currency, of the Gamma over customers' rate ν)."""

    p: float
    q: float
    v: float

    def expected_value(self, x: npt.ArrayLike, m: npt.ArrayLike) -> Vector:
        """E(M | p, q, γ, m̄_x, x): the expected mean value of a customer's future purchases,
        in currency, shape (n,).

            (γ + x·m̄) · p / (p·x + q - 1)
              = (q-1)/(px+q-1) · γp/(q-1) + px/(px+q-1) · m̄

        (Fader and Hardie 2013): a weighted mean of the population mean γp/(q-1) and the
        customer's own mean m̄. Customers without repeat purchases (x = 0) get the population
        mean; a mean that is not positive (zero-value or refunded orders) counts as 0, so such
        customers are expected to spend less than the population, never a negative amount.
        Needs q > 1 (otherwise the population mean is infinite): NaN where it is not.
        """
        x = np.asarray(x, dtype=np.float64)
        m = np.maximum(np.asarray(m, dtype=np.float64), 0.0)
        m = np.where(x > 0, m, 0.0)
        if self.q <= 1:
            return np.full(np.broadcast(x, m).shape, np.nan)
        expected: Vector = (self.v + x * m) * self.p / (self.p * x + self.q - 1)
        return expected


def log_likelihood(model: GammaGamma, x: npt.ArrayLike, m: npt.ArrayLike) -> Vector:
    """Each customer's log-likelihood ln f(z̄ = m | p, q, γ; x), shape (n,), for x > 0, m > 0.

    The marginal density of the mean value (Fader and Hardie 2013):

        f(z̄ | p, q, γ; x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q z̄^(px-1) x^(px) / (γ + x z̄)^(px+q)
    """
    values, _ = _log_likelihood_and_gradient(
        np.array([model.p, model.q, model.v]),
        np.asarray(x, dtype=np.float64),
        np.asarray(m, dtype=np.float64),
    )
    return values


def _log_likelihood_and_gradient(parameters: Vector, x: Vector, m: Vector) -> tuple[Vector, Vector]:
    p, q, v = parameters
    px = p * x
    log_total = np.log(v + x * m)
    values = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_total
    )
    shared = digamma(px + q)
    gradient = np.stack(
        [
            x * (shared - digamma(px) + np.log(m) + np.log(x) - log_total),
            shared - digamma(q) + np.log(v) - log_total,
            q / v - (px + q) / (v + x * m),
        ]
    )
    return values, gradient


@dataclass(frozen=True)
class Fit:
    """A fitted Gamma-Gamma model, with the total log-likelihood of the data it was fitted on
    and how many customers that was."""

    model: GammaGamma
    log_likelihood: float
    customers: int
    iterations: int


def fit(x: npt.ArrayLike, m: npt.ArrayLike) -> Fit:
    """Maximum-likelihood Gamma-Gamma parameters from customers' repeat purchases ``x`` and
    mean repeat value ``m`` (both (n,)); only customers with x > 0 and m > 0 take part.

    Raises FitError when the optimiser does not converge.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    usable = (x > 0) & (m > 0)
    groups = compress(x[usable], m[usable])
    gx, gm = groups.column(0), groups.column(1)

    def objective(parameters: Vector) -> tuple[Vector, Vector]:
        return _log_likelihood_and_gradient(parameters, gx, gm)

    # γ is in currency: start it at the mean value so that the start does not depend on it.
    start = np.array([1.0, 1.0, float(np.average(gm, weights=groups.weights))])
    estimate = maximise(objective, start, groups.weights, "Gamma-Gamma")
    return Fit(
        GammaGamma(*estimate.parameters),
        estimate.log_likelihood,
        int(usable.sum()),
        estimate.iterations,
    )
