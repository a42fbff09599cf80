"""The tenant's prediction model over GraphQL: `model` (its parameters, when and on what it
was fitted, and how well it predicts a holdout period) for readers of reports, and `fitModel`
(refit now, audited as the caller's) for admins (`fit_models`). The same operations as
`tierwise predict fit` and `predict validate`; mixed into the Query and Mutation roots."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import strawberry

from service.access.auth import Permission
from service.api.context import Info
from service.api.fields import arg, resolver
from service.db.database import tenant_transaction
from service.engine.predictions import tenant as models
from service.engine.predictions import validation
from service.errors import UserError

DEFAULT_HOLDOUT_DAYS = 182
"""Without arguments, `calibration` holds out the last 26 weeks before the model's time."""

_MEAN_SCALE = 4


def _exact(value: float) -> Decimal:
    """A float as the decimal of its shortest round-tripping form."""
    return Decimal(repr(value))


def _mean(value: float) -> Decimal:
    return round(Decimal(repr(value)), _MEAN_SCALE)


@strawberry.type(
    description="The fitted parameters: the optimiser's binary floats, written out exactly as "
    "their shortest decimal form."
)
class ModelParameters:
    r: Decimal = strawberry.field(description="BG/NBD: shape of the purchase rates' gamma.")
    alpha: Decimal = strawberry.field(description="BG/NBD: scale of the purchase rates, in days.")
    a: Decimal = strawberry.field(description="BG/NBD: beta of the drop-out probability, a.")
    b: Decimal = strawberry.field(description="BG/NBD: beta of the drop-out probability, b.")
    p: Decimal = strawberry.field(description="Gamma-Gamma: shape of each purchase's value.")
    q: Decimal = strawberry.field(description="Gamma-Gamma: shape of the customers' mean values.")
    v: Decimal = strawberry.field(description="Gamma-Gamma: scale of the customers' mean values.")


@strawberry.type(description="Customers with a number of calibration repeat purchases.")
class CalibrationBucket:
    repeat_purchases: str = strawberry.field(
        description="Repeat purchases in the calibration period: 0 to 6, or `7+`."
    )
    customers: int = strawberry.field(description="Customers with that many.")
    predicted: Decimal = strawberry.field(
        description="Mean predicted purchase occasions in the holdout period (4 decimals)."
    )
    actual: Decimal = strawberry.field(
        description="Mean actual purchase occasions in the holdout period (4 decimals)."
    )


@strawberry.type(
    description="How well the model predicts: BG/NBD fitted on the purchases before the "
    "calibration end, its predicted purchases in the holdout period against the actual ones."
)
class Calibration:
    calibration_end: dt.datetime = strawberry.field(description="End of the calibration period.")
    holdout_end: dt.datetime = strawberry.field(description="End of the holdout period.")
    buckets: list[CalibrationBucket] = strawberry.field(
        description="Per number of calibration repeat purchases."
    )
    predicted: Decimal = strawberry.field(description="Total predicted holdout purchases.")
    actual: int = strawberry.field(description="Total actual holdout purchases.")
    error: Decimal | None = strawberry.field(
        description="(predicted - actual) / actual; null when nobody bought in the holdout."
    )

    @classmethod
    def of(cls, result: validation.Validation) -> Calibration:
        return cls(
            calibration_end=result.calibration_end,
            holdout_end=result.holdout_end,
            buckets=[
                CalibrationBucket(
                    repeat_purchases=b.label,
                    customers=b.customers,
                    predicted=_mean(b.predicted),
                    actual=_mean(b.actual),
                )
                for b in result.buckets
            ],
            predicted=_mean(result.predicted),
            actual=result.actual,
            error=_mean(result.error) if result.actual else None,
        )


@strawberry.type(
    description="The tenant's current prediction model: BG/NBD (purchases, p_alive) and "
    "Gamma-Gamma (order value), fitted on its orders (docs/predictions.md)."
)
class Model:
    version: int = strawberry.field(description="Its version: each fit is the next one.")
    as_of: dt.datetime = strawberry.field(
        description="The time it was fitted as of: purchases before it count."
    )
    fitted_at: dt.datetime = strawberry.field(description="When the fit ran.")
    customers: int = strawberry.field(description="Customers with a purchase before asOf.")
    repeat_customers: int = strawberry.field(description="Of those, with a repeat purchase.")
    log_likelihood: Decimal = strawberry.field(description="BG/NBD log-likelihood of the fit.")
    parameters: ModelParameters = strawberry.field(description="The fitted parameters.")
    horizon_days: list[int] = strawberry.field(
        description="The horizons expected_orders(N days) and clv(N days) are stored for."
    )
    yearly_discount_rate: Decimal = strawberry.field(description="CLV's yearly discount rate.")

    @resolver(
        "Predicted against actual purchases in a holdout period (a fit of its own, nothing "
        "stored): by default the last 182 days before asOf. Null, with a BAD_INPUT error, "
        "when the period cannot be validated (too few repeat buyers before its end, or a "
        "holdout that does not end after it): the model itself is still given."
    )
    async def calibration(
        self,
        info: Info,
        calibration_end: Annotated[
            dt.datetime | None, arg("End of the calibration period (default: asOf - 182 days).")
        ] = None,
        holdout_end: Annotated[
            dt.datetime | None, arg("End of the holdout period (default: asOf).")
        ] = None,
    ) -> Calibration | None:
        end = holdout_end or self.as_of
        start = calibration_end or end - dt.timedelta(days=DEFAULT_HOLDOUT_DAYS)
        context = info.context
        async with tenant_transaction(context.engine, context.tenant, batch=True) as connection:
            return Calibration.of(await validation.validate(connection, context.tenant, start, end))

    @classmethod
    def of(cls, model: models.Model) -> Model:
        return cls(
            version=model.version,
            as_of=model.as_of,
            fitted_at=model.fitted_at,
            customers=model.customers,
            repeat_customers=model.repeat_customers,
            log_likelihood=_exact(model.log_likelihood),
            parameters=ModelParameters(
                r=_exact(model.bgnbd.r),
                alpha=_exact(model.bgnbd.alpha),
                a=_exact(model.bgnbd.a),
                b=_exact(model.bgnbd.b),
                p=_exact(model.gamma_gamma.p),
                q=_exact(model.gamma_gamma.q),
                v=_exact(model.gamma_gamma.v),
            ),
            horizon_days=list(model.horizon_days),
            yearly_discount_rate=model.yearly_discount_rate,
        )


@strawberry.type(description="A fit just made.")
class FittedModel:
    model: Model = strawberry.field(description="The new current model.")
    predictions: int = strawberry.field(description="Customers whose predictions were replaced.")


@strawberry.type
class PredictionQuery:
    @resolver(
        "The tenant's current prediction model; null until one is fitted.",
        needs=Permission.read_reports,
    )
    async def model(self, info: Info) -> Model | None:
        async with info.context.transaction() as connection:
            found = await models.current_model(connection, info.context.tenant)
        return None if found is None else Model.of(found)


@strawberry.type
class PredictionMutation:
    @resolver(
        "Fit the tenant's models on its purchases before asOf (default: now), store them as "
        "the next version and replace every customer's predictions; audited (`model.fit`). "
        "Refused, changing nothing, with fewer than 100 repeat buyers.",
        needs=Permission.fit_models,
    )
    async def fit_model(
        self,
        info: Info,
        as_of: Annotated[
            dt.datetime | None, arg("Purchases before this time count (default: now).")
        ] = None,
        horizon_days: Annotated[
            list[int] | None,
            arg("Horizons to store besides the catalog's (30, 90, 180, 365, 730 days)."),
        ] = None,
        yearly_discount_rate: Annotated[
            Decimal | None, arg("CLV's yearly discount rate (default: the current model's, or 0).")
        ] = None,
    ) -> FittedModel:
        context = info.context
        now = dt.datetime.now(dt.UTC)
        at = as_of or now
        if at > now:
            raise UserError(f"asOf ({at.isoformat()}) is in the future")
        if any(not 1 <= days <= 36_500 for days in horizon_days or ()):
            raise UserError("horizonDays: each horizon is from 1 to 36,500 days")
        if yearly_discount_rate is not None and not 0 <= yearly_discount_rate < 10:
            raise UserError("yearlyDiscountRate: a rate from 0 (no discount) to below 10")
        async with tenant_transaction(context.engine, context.tenant, batch=True) as connection:
            current = await models.current_model(connection, context.tenant)
            rate = yearly_discount_rate
            if rate is None:
                rate = Decimal(0) if current is None else current.yearly_discount_rate
            model, written = await models.fit_tenant(
                connection,
                context.tenant,
                at,
                actor=context.caller.actor,
                horizon_days=horizon_days or (current.horizon_days if current else None),
                yearly_discount_rate=rate,
            )
        return FittedModel(model=Model.of(model), predictions=written)
