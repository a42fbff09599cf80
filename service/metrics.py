"""Prometheus metrics: what the engine and the API count, and how `/metrics` renders them.

The engine reports into this module with one call at the end of a piece of work
(`observe_run`, `observe_import`); the HTTP layer (service.api.observe) counts requests and
GraphQL operations; the database pool is read at scrape time. Nothing here knows HTTP: the app
only asks for `exposition()`. Every metric lives in the process-wide default registry, next to
prometheus_client's own process metrics (`process_resident_memory_bytes`, ...), so each
replica is one scrape target. docs/operations.md lists them all.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

# Latency buckets (seconds) for requests and operations: a customer card takes milliseconds,
# a segment page or an evaluation through the API seconds.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Evaluation runs: from a small tenant's 50 ms to a million customers' minute.
_RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_SIZE_BUCKETS = (0, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)

HTTP_REQUESTS = Counter(
    "tierwise_http_requests",
    "HTTP requests answered, by method, route path and status code.",
    ["method", "path", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "tierwise_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method and route path.",
    ["method", "path"],
    buckets=_REQUEST_BUCKETS,
)
GRAPHQL_OPERATIONS = Counter(
    "tierwise_graphql_operations",
    "GraphQL operations executed, by operation name, type and outcome (ok or error).",
    ["operation", "type", "outcome"],
)
GRAPHQL_OPERATION_SECONDS = Histogram(
    "tierwise_graphql_operation_duration_seconds",
    "Time to parse, validate and execute a GraphQL operation (a subscription: its lifetime).",
    ["operation", "type"],
    buckets=_REQUEST_BUCKETS,
)
TENANT_BUDGET_WAIT_SECONDS = Histogram(
    "tierwise_tenant_budget_wait_seconds",
    "Time an operation waited for its tenant's operations under way to finish "
    "(TIERWISE_TENANT_COST_BUDGET), by outcome (ran, or timed_out); operations that did not "
    "wait are not counted.",
    ["outcome"],
    buckets=_REQUEST_BUCKETS,
)
EVALUATION_RUNS = Counter(
    "tierwise_evaluation_runs",
    "Full evaluation runs finished, by trigger (schedule, cli, api, ...) and kind "
    "(applied, or backtest).",
    ["trigger", "kind"],
)
EVALUATION_RUN_SECONDS = Histogram(
    "tierwise_evaluation_run_duration_seconds",
    "Duration of a full evaluation run of one scheme.",
    ["kind"],
    buckets=_RUN_BUCKETS,
)
EVALUATION_RUN_CUSTOMERS = Histogram(
    "tierwise_evaluation_run_customers",
    "Customers placed in a tier by one full evaluation run.",
    ["kind"],
    buckets=_SIZE_BUCKETS,
)
EVALUATION_RUN_CHANGED = Histogram(
    "tierwise_evaluation_run_changed",
    "Tier changes (transitions) one applied evaluation run recorded.",
    buckets=_SIZE_BUCKETS,
)
INGEST_ROWS = Counter(
    "tierwise_ingest_rows",
    "Rows of committed loads (files and ingest mutations), by kind and outcome "
    "(inserted, updated, unchanged, rejected).",
    ["kind", "outcome"],
)
INGEST_LOADS = Counter(
    "tierwise_ingest_loads",
    "Committed loads, by kind and source (file: `tierwise import`; api: an ingest mutation).",
    ["kind", "source"],
)
# Incremented by the webhook dispatcher (service.engine.webhooks): one per delivery attempt.
WEBHOOK_DELIVERIES = Counter(
    "tierwise_webhook_deliveries",
    "Webhook delivery attempts, by outcome: delivered (2xx), failed (will be retried), "
    "gave_up (out of attempts).",
    ["outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "tierwise_webhook_delivery_duration_seconds",
    "Time of one webhook delivery attempt (the receiver's answer, or the timeout).",
    buckets=_REQUEST_BUCKETS,
)


class _Run(Protocol):
    @property
    def applied(self) -> bool: ...
    @property
    def customers(self) -> int: ...
    @property
    def changed(self) -> int: ...
    @property
    def duration_ms(self) -> int: ...


class _Import(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def inserted(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def rejected(self) -> int: ...


def observe_run(result: _Run, trigger: str) -> None:
    """Count one finished full run (service.engine.evaluation calls this as it commits)."""
    kind = "applied" if result.applied else "backtest"
    EVALUATION_RUNS.labels(trigger, kind).inc()
    EVALUATION_RUN_SECONDS.labels(kind).observe(result.duration_ms / 1000)
    EVALUATION_RUN_CUSTOMERS.labels(kind).observe(result.customers)
    if result.applied:
        EVALUATION_RUN_CHANGED.observe(result.changed)


def observe_import(result: _Import, source: str) -> None:
    """Count one committed load's rows (service.data.ingest calls this after its commit)."""
    kind = str(result.kind)
    INGEST_LOADS.labels(kind, source).inc()
    for outcome in ("inserted", "updated", "unchanged", "rejected"):
        INGEST_ROWS.labels(kind, outcome).inc(getattr(result, outcome))


class _PoolCollector(Collector):
    """The connection pools of the engines this process serves with, read at scrape time."""

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()
        self._lock = threading.Lock()

    def track(self, engine: AsyncEngine) -> None:
        with self._lock:
            self._engines.add(engine)

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily(
            "tierwise_db_pool_size", "Connections the pool keeps open (pool_size)."
        )
        limit = GaugeMetricFamily(
            "tierwise_db_pool_max",
            "Most connections the pool may open: pool_size plus max_overflow.",
        )
        checked_out = GaugeMetricFamily(
            "tierwise_db_pool_checked_out", "Connections in use by requests and runs right now."
        )
        idle = GaugeMetricFamily(
            "tierwise_db_pool_idle", "Open connections waiting in the pool right now."
        )
        with self._lock:
            pools = [engine.sync_engine.pool for engine in self._engines]
        totals = [0, 0, 0, 0]
        for pool in pools:
            if isinstance(pool, QueuePool):
                totals[0] += pool.size()
                totals[1] += pool.size() + max(pool._max_overflow, 0)
                totals[2] += pool.checkedout()
                totals[3] += pool.checkedin()
        for family, value in zip((size, limit, checked_out, idle), totals, strict=True):
            family.add_metric([], value)
            yield family


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


def track_pool(engine: AsyncEngine) -> None:
    """Report ``engine``'s pool in the `tierwise_db_pool_*` gauges (for as long as it lives)."""
    _POOLS.track(engine)


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The metrics in the text format the scraper accepts (Prometheus or OpenMetrics), with its
    content type."""
    encode, content_type = choose_encoder(accept or "")
    return encode(REGISTRY), content_type
