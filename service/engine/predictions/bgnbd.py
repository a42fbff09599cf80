"""The BG/NBD model of repeat buying (Fader, Hardie and Lee 2005, "'Counting your customers'
the easy way: an alternative to the Pareto/NBD model", Marketing Science 24(2), 275-284).

While alive, a customer buys at a Poisson rate λ; after each repeat purchase they drop out for
good with probability p. Across customers λ ~ Gamma(r, α) (shape r, rate α) and
p ~ Beta(a, b). A customer's history is summarised by x (repeat purchases), t_x (time from the
first to the last purchase) and T (time from the first purchase to the end of observation), all
in one time unit (Tierwise: days); α is in that unit, r, a and b have none.

Arrays are numpy float64 of shape (n,), one element per customer (or per compressed group),
broadcast together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import digamma, expit, gammaln, hyp2f1

from service.engine.predictions.mle import Estimate, Vector, compress, maximise

ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class BgNbd:
    """BG/NBD parameters: r and alpha of the Gamma over purchase rates (alpha in the time unit
    of the data), a and b of the Beta over dropout probabilities."""

    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Vector:
        """P(still alive at T | x, t_x, T), shape (n,), in [0, 1].

        P = 1 / (1 + δ(x>0) · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x)): Fader, Hardie and Lee (2008),
        "Computing P(alive) using the BG/NBD model" (research note 021), their closed form.
        Evaluated as the logistic function of the log-odds, which cannot overflow.
        """
        x, t_x, T = _arrays(x, t_x, T)
        repeat = x > 0
        log_odds = (self.r + x) * np.log((self.alpha + T) / (self.alpha + t_x)) + np.log(
            self.a / (self.b + np.maximum(x, 1) - 1)
        )
        alive: Vector = np.where(repeat, expit(-log_odds), 1.0)
        return alive

    def expected_purchases(
        self, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> Vector:
        """E[Y(t) | x, t_x, T]: expected repeat purchases in the next ``t`` time units (a scalar
        or (n,)), shape (n,).

        Fader, Hardie and Lee (2005), eq. (10):

            (a+b+x-1)/(a-1) · [1 - ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; z)]
            / (1 + δ(x>0) · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x)),   z = t/(α+T+t),

        where the denominator is 1/P(alive). The bracket is computed after Euler's
        transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) (Abramowitz and Stegun
        15.3.3), as 1 - (1-z)^(a-1) · 2F1(a+b-1-r, a-1; a+b+x-1; z): the original form
        multiplies a vanishing power by a diverging 2F1 for many purchases or long horizons
        (0 · inf), the transformed one stays near 1 (the trouble Fader and Hardie's 2013 note
        "Overcoming the BG/NBD model's #NUM! error problem" is about). Undefined at a = 1.
        """
        x, t_x, T = _arrays(x, t_x, T)
        t = np.asarray(t, dtype=np.float64)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        bracket = 1 - (1 - z) ** (a - 1) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
        expected: Vector = (a + b + x - 1) / (a - 1) * bracket * self.p_alive(x, t_x, T)
        return expected


def _arrays(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[Vector, Vector, Vector]:
    return (
        np.asarray(x, dtype=np.float64),
        np.asarray(t_x, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )


def log_likelihood(model: BgNbd, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Vector:
    """Each customer's log-likelihood ln L(r, α, a, b | x, t_x, T), shape (n,).

    Fader, Hardie and Lee (2005), eq. (6):

        L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
          + δ(x>0) · B(a+1, b+x-1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))
    """
    parameters = np.array([model.r, model.alpha, model.a, model.b])
    values, _ = _log_likelihood_and_gradient(parameters, *_arrays(x, t_x, T))
    return values


def _log_likelihood_and_gradient(
    parameters: Vector, x: Vector, t_x: Vector, T: Vector
) -> tuple[Vector, Vector]:
    """Eq. (6) in logs, ln L = A1 + A2 + ln(e^A3 + δ(x>0) e^A4), and its gradient (4, n) in
    (r, α, a, b), with w = δ(x>0) e^A4 / (e^A3 + e^A4) the weight of the second term."""
    r, alpha, a, b = parameters
    repeat = x > 0
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    # B(a+1, b+x-1)/B(a, b+x) = a/(b+x-1); x is raised to 1 where the term is absent.
    shifted = b + np.maximum(x, 1) - 1
    a4 = np.where(repeat, np.log(a) - np.log(shifted) - (r + x) * np.log(alpha + t_x), -np.inf)
    mixed = np.logaddexp(a3, a4)
    w = np.exp(a4 - mixed)
    values = a1 + a2 + mixed
    common = digamma(a + b) - digamma(a + b + x)
    gradient = np.stack(
        [
            digamma(r + x)
            - digamma(r)
            + np.log(alpha)
            - (1 - w) * np.log(alpha + T)
            - w * np.log(alpha + t_x),
            r / alpha - (r + x) * ((1 - w) / (alpha + T) + w / (alpha + t_x)),
            common + w / a,
            common + digamma(b + x) - digamma(b) - w / shifted,
        ]
    )
    return values, gradient


@dataclass(frozen=True)
class Fit:
    """A fitted BG/NBD model, with the total log-likelihood of the data it was fitted on."""

    model: BgNbd
    log_likelihood: float
    iterations: int


def fit(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Fit:
    """Maximum-likelihood BG/NBD parameters for customers (x, t_x, T), each of shape (n,).

    Rows are compressed to the distinct (x, t_x, T) first, each weighted by its number of
    customers (whole days make them few). Raises FitError when the optimiser does not converge.
    """
    groups = compress(x, t_x, T)
    gx, gt_x, gT = groups.column(0), groups.column(1), groups.column(2)

    def objective(parameters: Vector) -> tuple[Vector, Vector]:
        return _log_likelihood_and_gradient(parameters, gx, gt_x, gT)

    # α is a time scale: start it at the customers' mean age so that the start does not
    # depend on the time unit; r, a and b start at 1.
    start = np.array([1.0, max(float(np.average(gT, weights=groups.weights)), 1.0), 1.0, 1.0])
    estimate: Estimate = maximise(objective, start, groups.weights, "BG/NBD")
    return Fit(BgNbd(*estimate.parameters), estimate.log_likelihood, estimate.iterations)
