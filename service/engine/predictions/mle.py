"""Maximum likelihood on compressed data: what the BG/NBD and Gamma-Gamma fits share.

Customers with the same sufficient statistics (for BG/NBD: x, t_x and T in whole days) have
the same likelihood, so a fit works on the distinct rows, each weighted by how many customers
share it: a million customers bought on a few hundred thousand distinct (x, t_x, T) at most.
Parameters are optimised on their logarithms (every parameter is positive, and the scales
differ by orders of magnitude), with the analytic gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from service.errors import UserError

Vector = npt.NDArray[np.float64]

# Per-row log-likelihood (n,) and its gradient in the parameters (k, n), at parameters (k,).
LogLikelihood = Callable[[Vector], tuple[Vector, Vector]]


@dataclass(frozen=True)
class Compressed:
    """The distinct rows of some columns, with how often each occurs.

    ``rows`` is (m, k), ``weights`` (m,) counts of each distinct row, and ``inverse`` (n,)
    gives each original row's index into ``rows``, so ``rows[inverse]`` restores the input.
    """

    rows: Vector
    weights: Vector
    inverse: npt.NDArray[np.intp]

    def column(self, index: int) -> Vector:
        return self.rows[:, index]


def compress(*columns: npt.ArrayLike) -> Compressed:
    """The distinct rows of equally long ``columns`` (each of shape (n,)), in lexicographic
    order, and their counts."""
    stacked = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    if len(stacked) == 0:
        return Compressed(stacked, np.zeros(0), np.zeros(0, dtype=np.intp))
    # A lexsort and a pass over neighbours: six times faster than np.unique(axis=0) on a
    # million rows (which sorts a structured view).
    order = np.lexsort(stacked.T[::-1])
    ordered = stacked[order]
    starts = np.empty(len(ordered), dtype=bool)
    starts[0] = True
    starts[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    group = np.cumsum(starts) - 1
    inverse = np.empty(len(ordered), dtype=np.intp)
    inverse[order] = group
    return Compressed(ordered[starts], np.bincount(group).astype(np.float64), inverse)


_LOG_BOUND = 30.0

GRADIENT_TOLERANCE = 1e-6
"""Largest |d(mean log-likelihood)/d(log parameter)| at a converged fit."""


class FitError(UserError):
    """The optimiser did not converge; the message says to what and why."""


@dataclass(frozen=True)
class Estimate:
    """Maximum-likelihood parameters and the total log-likelihood at them."""

    parameters: tuple[float, ...]
    log_likelihood: float
    iterations: int


def maximise(log_likelihood: LogLikelihood, start: Vector, weights: Vector, model: str) -> Estimate:
    """The parameters (all positive) that maximise ``weights @ log_likelihood(parameters)``.

    L-BFGS-B over the log-parameters, from ``start`` (positive, shape (k,)), on the mean
    log-likelihood per customer so that the tolerances do not depend on the number of
    customers. Raises FitError, naming ``model``, when it stops where the likelihood is not
    flat (every gradient component within `GRADIENT_TOLERANCE`), not finite, or at a bound.
    """
    total = float(weights.sum())

    def objective(log_parameters: Vector) -> tuple[float, Vector]:
        parameters = np.exp(log_parameters)
        values, gradient = log_likelihood(parameters)
        # d/d(log θ) = θ · d/dθ
        return (
            -float(weights @ values) / total,
            -(gradient @ weights) * parameters / total,
        )

    result = minimize(
        objective,
        np.log(start),
        jac=True,
        method="L-BFGS-B",
        # Bounds keep exp() finite; a fit that runs into them has no interior optimum.
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start),
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000},
    )
    # Converged means a flat likelihood, whatever the optimiser's own stopping rule said: its
    # line search can fail ("ABNORMAL") at an optimum already found to rounding noise.
    flat = bool(np.all(np.abs(result.jac) <= GRADIENT_TOLERANCE))
    at_bound = bool(np.any(np.abs(result.x) >= _LOG_BOUND - 1e-6))
    if not np.isfinite(result.fun) or not flat or at_bound:
        reason = "a parameter ran off" if at_bound else str(result.message).strip(" :")
        raise FitError(
            f"the {model} fit did not converge ({reason}): the customers' histories do not "
            "determine its parameters (too few, too alike, or nobody dropping out)"
        )
    parameters = np.exp(result.x)
    return Estimate(
        tuple(float(p) for p in parameters), -float(result.fun) * total, int(result.nit)
    )
