"""The database schema as SQLAlchemy Core tables: the one definition migrations and queries share.

Every table carries ``tenant_id`` and every key starts with it, so the schema can be
distributed by tenant (Citus) and every query can be filtered by tenant. Customers have an
internal ``bigint`` id (compact joins over millions of orders) besides the caller's
``external_id``; orders and events are keyed by their external id (what ingest is idempotent on).

Key text columns use the "C" collation: byte order is all a key needs, and a locale's collation
made bulk index inserts over twice as slow (benchmarks/bench_ingest.py). Orders, events and
rollups have no foreign key to customers: ingest creates every customer it references in the
same transaction, and the per-row trigger checks cost 6 of 16 seconds of a 1M-order import.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# Money: exact decimals, four fractional digits so no currency's minor units are rounded away.
AMOUNT = Numeric(18, 4)


# Keys compare bytewise (see the module docstring).
KEY = Text(collation="C")


def _tenant_id() -> Column[str]:
    return Column("tenant_id", KEY, nullable=False)


def _external_id() -> Column[str]:
    return Column("external_id", KEY, nullable=False)


def _timestamp(name: str, *, nullable: bool = True) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _sequence_id(table: str) -> Column[int]:
    """A bigint id from the sequence ``<table>_id_seq`` (not an identity column: Citus cannot
    change the shard count of a table with one; migration 0011)."""
    default = text(f"nextval('{table}_id_seq'::regclass)")
    return Column("id", BigInteger, nullable=False, server_default=default)


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


tenants = Table(
    "tenants",
    metadata,
    Column("id", KEY, primary_key=True),
    Column("name", Text, nullable=False),
    _created_at(),
    # The key of the digests that stand for erased customers' ids in the audit log; made at
    # the tenant's first erasure, returned by no API (service/engine/deletion.py).
    Column("erasure_key", LargeBinary),
    # The ISO 4217 code every amount is reported in: orders in other currencies are converted
    # to it when imported, at the tenant's `exchange_rates` (service/data/rates.py).
    Column("currency", Text, nullable=False, server_default="EUR"),
)

# Secrets of the deployment, the same for every tenant and process: ``ids``, the key the ids of
# rows users see are encrypted with (service/db/ids.py; made by migration 0015, unless the
# TIERWISE_ID_KEY setting replaces it). No tenant column: a reference table on Citus.
deployment_keys = Table(
    "deployment_keys",
    metadata,
    Column("name", KEY, primary_key=True),
    Column("key", LargeBinary, nullable=False),
)

# Exchange rates a tenant imports (`tierwise import rates`): one unit of `currency` is worth
# `rate` units of the tenant's reporting currency from `valid_from` (a date, UTC) until the
# next rate of that currency. Exact: no binary float between a file and a converted amount.
exchange_rates = Table(
    "exchange_rates",
    metadata,
    _tenant_id(),
    Column("currency", KEY, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("rate", Numeric, nullable=False),
    _created_at(),
    PrimaryKeyConstraint("tenant_id", "currency", "valid_from"),
    CheckConstraint("rate > 0", name="rate_positive"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
)

customers = Table(
    "customers",
    metadata,
    _tenant_id(),
    _sequence_id("customers"),
    _external_id(),
    Column("name", Text),
    Column("email", Text),
    Column("phone", Text),
    Column("age", Integer),
    Column("gender", Text),
    Column("occupation", Text),
    Column("region", Text),
    Column("industry", Text),
    Column("company_size", Integer),
    _timestamp("registered_at"),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "id"),
    UniqueConstraint("tenant_id", "external_id"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
)

orders = Table(
    "orders",
    metadata,
    _tenant_id(),
    _external_id(),
    Column("customer_id", BigInteger, nullable=False),
    # In the tenant's reporting currency (converted when imported, so every metric sums one
    # currency); `original_amount` and `currency` (ISO 4217) are the amount as the order had it.
    Column("amount", AMOUNT, nullable=False),
    Column("currency", Text),
    Column("original_amount", AMOUNT),
    _timestamp("ordered_at", nullable=False),
    Column("category", Text),
    Column("channel", Text),
    # `completed` or `cancelled` (counted nowhere); a refund is a row of its own, with a negative
    # amount, naming in `refund_of` the order it refunds when known (dsl/catalog.py says which
    # rows are purchases; docs/rules.md why).
    Column("status", Text, nullable=False, server_default="completed"),
    Column("refund_of", KEY),
    _created_at(),
    PrimaryKeyConstraint("tenant_id", "external_id"),
    CheckConstraint("status IN ('completed', 'cancelled')", name="status"),
    CheckConstraint("refund_of IS NULL OR amount <= 0", name="refund_amount"),
    # One customer's orders in time order: incremental updates, explain, the customer card.
    Index(None, "tenant_id", "customer_id", "ordered_at"),
)

events = Table(
    "events",
    metadata,
    _tenant_id(),
    # Given by the caller, or a digest of the event's content when it has none (see ingest).
    _external_id(),
    Column("customer_id", BigInteger, nullable=False),
    Column("type", KEY, nullable=False),
    _timestamp("occurred_at", nullable=False),
    Column("value", Numeric),
    Column("properties", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
    PrimaryKeyConstraint("tenant_id", "external_id"),
    Index(None, "tenant_id", "customer_id", "type", "occurred_at"),
)

# All-time per-customer order rollup, kept current by ingest and rebuildable from `orders`
# (service.data.rollups). It answers "current metric values" without scanning a customer's orders:
# order_count counts purchases, order_total is the net amount (refunds subtracted, cancelled
# orders left out), first/last_order_at are of purchases, as the metrics define them.
customer_metrics = Table(
    "customer_metrics",
    metadata,
    _tenant_id(),
    Column("customer_id", BigInteger, nullable=False),
    Column("order_count", BigInteger, nullable=False),
    Column("order_total", Numeric, nullable=False),
    _timestamp("first_order_at"),
    _timestamp("last_order_at"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "customer_id"),
)

# --- Predictions (service.engine.predictions) -----------------------------------------------

# Every fit of a tenant's BG/NBD and Gamma-Gamma models, numbered 1, 2, ...; the highest version
# is the tenant's current model. Times are in days (alpha), values in the tenant's currency (v).
prediction_models = Table(
    "prediction_models",
    metadata,
    _tenant_id(),
    Column("version", Integer, nullable=False),
    # The evaluation time the models were fitted at: purchases strictly before it count.
    _timestamp("as_of", nullable=False),
    Column("r", Double, nullable=False),
    Column("alpha", Double, nullable=False),
    Column("a", Double, nullable=False),
    Column("b", Double, nullable=False),
    Column("p", Double, nullable=False),
    Column("q", Double, nullable=False),
    Column("v", Double, nullable=False),
    # Customers with a purchase before as_of, those with a repeat occasion, and the BG/NBD
    # log-likelihood of all of them; Gamma-Gamma's own customers (repeat, positive mean value).
    Column("customers", BigInteger, nullable=False),
    Column("repeat_customers", BigInteger, nullable=False),
    Column("log_likelihood", Double, nullable=False),
    Column("gamma_gamma_customers", BigInteger, nullable=False),
    Column("gamma_gamma_log_likelihood", Double, nullable=False),
    # The horizons (days) customer_predictions holds expected orders and CLV for, in order,
    # and the yearly rate CLV is discounted at.
    Column("horizon_days", ARRAY(Integer), nullable=False),
    Column("yearly_discount_rate", Numeric, nullable=False),
    Column("fitted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "version"),
)

# Each customer's predictions from the tenant's current model, replaced whole by each fit.
# Model outputs are binary floats, rounded when written to 6 decimals (probabilities, counts) or
# 4 (currency), so that every reader sees the same short digits.
customer_predictions = Table(
    "customer_predictions",
    metadata,
    _tenant_id(),
    Column("customer_id", BigInteger, nullable=False),
    Column("model_version", Integer, nullable=False),
    # The customer's summary at this time: x, t_x and T of the models, and the mean net amount
    # of the repeat occasions (null without one).
    _timestamp("as_of", nullable=False),
    Column("repeat_purchases", BigInteger, nullable=False),
    Column("purchase_span_days", Integer, nullable=False),
    Column("observed_days", BigInteger, nullable=False),
    Column("mean_repeat_value", Double),
    Column("p_alive", Double, nullable=False),
    # Null when the Gamma-Gamma fit has no finite population mean (q <= 1).
    Column("expected_order_value", Double),
    # One element per prediction_models.horizon_days of the model version.
    Column("expected_orders", ARRAY(Double), nullable=False),
    Column("clv", ARRAY(Double)),
    PrimaryKeyConstraint("tenant_id", "customer_id"),
)

# --- Segmentation engine -------------------------------------------------------------------

schemes = Table(
    "schemes",
    metadata,
    _tenant_id(),
    Column("key", KEY, nullable=False),
    Column("title", Text),
    Column("current_version", Integer),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "key"),
)

# Immutable: a new rule text is a new version. `tiers` and `depends_on` are read off the checked
# form when published, for listing without re-checking.
scheme_versions = Table(
    "scheme_versions",
    metadata,
    _tenant_id(),
    Column("scheme_key", KEY, nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("tiers", ARRAY(Text), nullable=False),
    Column("depends_on", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("uses_population", Boolean, nullable=False, server_default=text("false")),
    _created_at(),
    PrimaryKeyConstraint("tenant_id", "scheme_key", "version"),
)

# One row per evaluation: written as `running` in its own transaction when it starts, finished
# in the transaction that applies its result, so a killed run stays visible as not finished.
evaluation_runs = Table(
    "evaluation_runs",
    metadata,
    _tenant_id(),
    _sequence_id("evaluation_runs"),
    Column("scheme_key", KEY, nullable=False),
    Column("version", Integer, nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
    # False for a backtest (`--as-of` in the past): counted and kept, not made current.
    Column("applied", Boolean, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("duration_ms", Integer),
    Column("customers", BigInteger),
    Column("changed", BigInteger),
    # Per tier, in scheme order: name, customers, revenue.
    Column("tiers", JSONB),
    Column("error", Text),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index(None, "tenant_id", "scheme_key", "started_at"),
)

memberships = Table(
    "memberships",
    metadata,
    _tenant_id(),
    Column("scheme_key", KEY, nullable=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("tier", Text, nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    # The last evaluation at which the member's tier condition held: a `keep` tier keeps them
    # until that is longer ago than its keep.
    Column("qualified_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant_id", "scheme_key", "customer_id"),
    Index(None, "tenant_id", "scheme_key", "tier", "customer_id"),
    # A customer's tiers in every scheme (the API's customer card and its strategies): without
    # it one customer's lookup scanned every membership of the tenant (237 ms at 1M customers).
    Index(None, "tenant_id", "customer_id"),
)

# Every change of a customer's tier; entering a scheme is a change from NULL, leaving it (no
# tier matches any more) a change to NULL. `run_id` is NULL for incremental updates. `id`
# comes from one sequence for all tenants and stays inside; clients see `number`, counted per
# tenant and scheme (`transition_counters`), so no tenant can read another's volume off it.
transitions = Table(
    "transitions",
    metadata,
    _tenant_id(),
    _sequence_id("transitions"),
    Column("scheme_key", KEY, nullable=False),
    Column("number", BigInteger, nullable=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("from_tier", Text),
    Column("to_tier", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", BigInteger),
    Column("trigger", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index(None, "tenant_id", "customer_id", "scheme_key", "id"),
    Index(None, "tenant_id", "scheme_key", "id"),
)

# Each time a member of a `keep` tier was kept without qualifying: from `held_from` (the first
# evaluation that found their condition false) until `ended_at` (they qualified again or left
# the tier), with the last qualification before it. A backtest reads who was kept as of then.
tier_holds = Table(
    "tier_holds",
    metadata,
    _tenant_id(),
    Column("scheme_key", KEY, nullable=False),
    Column("customer_id", BigInteger, nullable=False),
    Column("tier", Text, nullable=False),
    Column("qualified_at", DateTime(timezone=True)),
    Column("held_from", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant_id", "scheme_key", "customer_id", "held_from"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
)

# The last `transitions.number` given out per tenant and scheme: written only under the
# scheme's run lock (runs and incremental updates), so numbers are never given twice, and
# never reused after transitions are deleted.
transition_counters = Table(
    "transition_counters",
    metadata,
    _tenant_id(),
    Column("scheme_key", KEY, nullable=False),
    Column("last_number", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "scheme_key"),
)

strategies = Table(
    "strategies",
    metadata,
    _tenant_id(),
    _sequence_id("strategies"),
    Column("scheme_key", KEY, nullable=False),
    Column("tier", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("channel", Text, nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("100")),  # lower first
    Column("parameters", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "id"),
    UniqueConstraint("tenant_id", "scheme_key", "tier", "name"),
)

# Long-lived API keys for machine clients. Only a hash of the secret is kept: the key is shown
# once, at creation. Revoking sets `revoked_at`; the row stays for the audit trail.
api_keys = Table(
    "api_keys",
    metadata,
    _tenant_id(),
    Column("id", KEY, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("role", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    _created_at(),
    Column("created_by", Text, nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant_id", "id"),
)

# Every change to rules, strategies, keys and webhooks, every deletion and erasure: who, when,
# what (before and after), from where. Append-only: a trigger refuses UPDATE and DELETE, and the
# service's role may only INSERT and SELECT.
audit_log = Table(
    "audit_log",
    metadata,
    _tenant_id(),
    _sequence_id("audit_log"),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("before", JSONB),
    Column("after", JSONB),
    Column("source", Text, nullable=False),
    Column("request_id", Text),
    PrimaryKeyConstraint("tenant_id", "id"),
    Index(None, "tenant_id", "at"),
)

# Endpoints a tenant registered for tier transitions, optionally filtered by scheme and tier.
webhooks = Table(
    "webhooks",
    metadata,
    _tenant_id(),
    _sequence_id("webhooks"),
    Column("url", Text, nullable=False),
    # Kept in clear: the service needs it to sign every delivery (HMAC-SHA256).
    Column("secret", Text, nullable=False),
    Column("scheme_key", KEY),
    Column("tier", Text),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    Column("created_by", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
)

# The outbox: one row per (webhook, transition), written in the transaction that writes the
# transition, so a delivery cannot be lost to a crash between the two.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _tenant_id(),
    _sequence_id("webhook_deliveries"),
    Column("webhook_id", BigInteger, nullable=False),
    # What receivers deduplicate on: the same for every attempt of one delivery.
    Column("event_id", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    # pending, delivered or dead.
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("last_status", Integer),
    _created_at(),
    Column("delivered_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant_id", "id"),
    UniqueConstraint("tenant_id", "webhook_id", "event_id"),
    # The dispatcher's queue: only pending rows, however many delivered ones pile up.
    Index(
        "ix_webhook_deliveries_pending",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
    ),
)
