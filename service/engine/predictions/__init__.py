"""Predictions of repeat buying: customer lifetime value and churn risk.

The models, pure numpy/scipy with no database: `bgnbd` (BG/NBD: how many more purchases, and
the probability that a customer is still active), `gamma_gamma` (the expected value of future
purchases), `clv` (the two combined over a horizon, optionally discounted) and `mle` (the
maximum-likelihood machinery they share: compressed data, log-parameters, analytic gradients).

Against the database: `purchases` (THE place that says what counts as a purchase and its net
amount, and the per-customer summary computed from it in SQL), `tenant` (fitting a tenant's
models, versioned, and every customer's predictions from the current one) and `validation`
(calibration against a holdout period). docs/predictions.md explains the models, the time
convention and the references.
"""
