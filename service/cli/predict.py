"""`tierwise predict`: fit a tenant's BG/NBD and Gamma-Gamma models, and validate them
against a holdout period."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.support import (
    AsOfOption,
    FormatOption,
    OutputFormat,
    TenantOption,
    out,
    parse_as_of,
    run_with_engine,
    settings,
)
from service.errors import UserError

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.engine.predictions.tenant import Model
    from service.engine.predictions.validation import Validation

# The prediction engine (numpy, scipy: over a second to import on a busy machine) and the
# database are imported by the commands that use them, so that every other `tierwise` command
# starts without them.

predict_app = typer.Typer(
    rich_markup_mode=None,
    help="Predictions: customer lifetime value and churn risk (BG/NBD and Gamma-Gamma).",
    no_args_is_help=True,
)


@predict_app.command()
def fit(
    as_of: AsOfOption = None,
    horizon: Annotated[
        list[int] | None,
        typer.Option(
            "--horizon",
            metavar="DAYS",
            help="Horizon in days to keep expected orders and CLV for (repeatable; "
            "default 30, 90, 180 and 365).",
        ),
    ] = None,
    discount_rate: Annotated[
        str,
        typer.Option(
            "--discount-rate",
            metavar="RATE",
            help="Yearly rate to discount CLV at, e.g. 0.1 for 10 %.",
        ),
    ] = "0",
    tenant: TenantOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """Fit the tenant's models on its purchases before --as-of (default: now), store them as
    its current model and recompute every customer's predictions.

    Refused, changing nothing, when fewer than 100 customers have a repeat purchase.
    """
    config = settings()
    tenant_id = tenant or config.default_tenant
    when = parse_as_of(as_of) or dt.datetime.now(dt.UTC)
    rate = _rate(discount_rate)
    bad = [days for days in horizon or () if not 1 <= days <= 36_500]
    if bad:
        raise UserError(f"--horizon must be between 1 and 36500 days, not {bad[0]}")
    from service.access import audit
    from service.db.database import tenant_transaction
    from service.engine.predictions.tenant import fit_tenant

    async def work(engine: AsyncEngine) -> tuple[Model, int]:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await fit_tenant(
                connection,
                tenant_id,
                when,
                actor=audit.command_line_actor(),
                horizon_days=horizon,
                yearly_discount_rate=rate,
            )

    model, written = run_with_engine(config, work)
    if output is OutputFormat.json:
        out.print_json(json.dumps(model.as_json()))
        return
    bg, gg = model.bgnbd, model.gamma_gamma
    out.print(
        f"model {model.version} of tenant {tenant_id!r}, fitted as of {model.as_of.isoformat()} "
        f"on {model.customers:,} customers ({model.repeat_customers:,} with repeat purchases)\n"
        f"BG/NBD       r {bg.r:.4f}  alpha {bg.alpha:.4f} days  a {bg.a:.4f}  b {bg.b:.4f}  "
        f"log-likelihood {model.log_likelihood:,.2f}\n"
        f"Gamma-Gamma  p {gg.p:.4f}  q {gg.q:.4f}  v {gg.v:.4f}  "
        f"on {model.gamma_gamma_customers:,} customers\n"
        f"predictions of {written:,} customers replaced",
        highlight=False,
    )
    if gg.q <= 1:
        out.print(
            "note: q <= 1, so the population's mean order value is infinite: expected order "
            "values and CLV are left empty",
            highlight=False,
        )


def _rate(text: str) -> Decimal:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise UserError(f"--discount-rate: {text!r} is not a number") from None
    if not rate.is_finite() or not 0 <= rate < 10:
        raise UserError(f"--discount-rate must be a yearly rate from 0 to 10, not {text}")
    return rate


@predict_app.command("validate")
def validate_command(
    calibration_end: Annotated[
        str,
        typer.Option(
            "--calibration-end",
            metavar="DATE",
            help="Fit on purchases before DATE (ISO 8601; a date alone is midnight UTC).",
        ),
    ],
    holdout_end: Annotated[
        str,
        typer.Option("--holdout-end", metavar="DATE", help="Compare with purchases until DATE."),
    ],
    tenant: TenantOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """How good the predictions are: fit BG/NBD on the purchases before --calibration-end,
    predict each customer's purchases until --holdout-end and compare with what they did,
    per number of repeat purchases in the calibration period. Stores nothing."""
    config = settings()
    tenant_id = tenant or config.default_tenant
    start = _parse("--calibration-end", calibration_end)
    end = _parse("--holdout-end", holdout_end)

    from service.db.database import tenant_transaction
    from service.engine.predictions.validation import validate

    async def work(engine: AsyncEngine) -> Validation:
        async with tenant_transaction(engine, tenant_id) as connection:
            return await validate(connection, tenant_id, start, end)

    result = run_with_engine(config, work)
    if output is OutputFormat.json:
        out.print_json(json.dumps(validation_json(result)))
    else:
        out.print(validation_table(result), highlight=False)


def _parse(option: str, value: str) -> dt.datetime:
    from service.data.records import FieldError, parse_timestamp  # reads the rule language

    try:
        return parse_timestamp(value)
    except FieldError as error:
        raise UserError(f"{option}: {error}") from None


def validation_json(result: Validation) -> dict[str, object]:
    model = result.model.model
    return {
        "calibration_end": result.calibration_end.isoformat(),
        "holdout_end": result.holdout_end.isoformat(),
        "holdout_days": result.holdout_days,
        "bgnbd": {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b},
        "time_unit": "days",
        "buckets": [
            {
                "repeat_purchases": b.label,
                "customers": b.customers,
                "predicted": b.predicted,
                "actual": b.actual,
            }
            for b in result.buckets
        ],
        "predicted": result.predicted,
        "actual": result.actual,
        "error": result.error,
    }


def validation_table(result: Validation) -> Table:
    from rich.table import Table

    table = Table(
        title=f"purchases from {result.calibration_end.isoformat()} to "
        f"{result.holdout_end.isoformat()} ({result.holdout_days:g} days), per customer",
        title_justify="left",
    )
    for name in ("repeat purchases before", "customers", "predicted", "actual", "difference"):
        table.add_column(name, justify="right")
    for bucket in result.buckets:
        table.add_row(
            bucket.label,
            f"{bucket.customers:,}",
            f"{bucket.predicted:.3f}",
            f"{bucket.actual:.3f}",
            f"{bucket.predicted - bucket.actual:+.3f}",
        )
    table.add_section()
    table.add_row(
        "total",
        f"{sum(b.customers for b in result.buckets):,}",
        f"{result.predicted:,.1f}",
        f"{result.actual:,}",
        f"{result.error:+.1%}",
    )
    return table
