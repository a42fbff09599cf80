"""Configuration from ``TIERWISE_*`` environment variables (and their CLI overrides)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "text"]


class Settings(BaseSettings):
    """Everything Tierwise reads from its environment; see the README's configuration table."""

    # Each field's docstring is its description: docs/operations.md's table is made from them
    # (`python -m service.cli.config_doc`), and a test keeps the two equal. Read there, from
    # this file's syntax tree, not by pydantic's use_attribute_docstrings: that reads and
    # parses this source whenever the module is imported (13 ms of every command's start).
    model_config = SettingsConfigDict(env_prefix="TIERWISE_", extra="ignore")

    database_url: str | None = None
    """A plain ``postgresql://user@host:port/db`` URL; unset means the embedded Postgres."""
    database_pre_ping: bool = False
    """Test each pooled connection before use (three extra round trips per checkout, a third
    of a small API request's): for networks that drop idle connections silently. Off, a
    connection found dead fails its request once and the pool replaces it."""
    data_dir: Path = Path(".tierwise")
    """Where the embedded Postgres keeps its files."""
    host: str = "127.0.0.1"
    """Interface `serve` listens on (`--host`)."""
    port: int = 8000
    """Port `serve` listens on (`--port`)."""
    workers: int = Field(default=1, ge=1)
    """Worker processes of `serve` and `demo` (`--workers`), sharing one socket, each a whole
    service: its own pool, scheduler, webhook dispatcher, subscriptions, limits and metrics.
    Set one per core the service may use (docs/operations.md, "Workers"); 1 by default."""
    log_level: LogLevel = "info"
    """`debug`, `info`, `warning` or `error`."""
    log_format: LogFormat | None = None
    """`json` (one object per line, with the request id) or `text`; unset: json for `serve`,
    text for the other commands."""
    default_tenant: str = "default"
    """The tenant commands work in without `--tenant`."""
    evaluation_interval: float = 86_400.0
    """Seconds between scheduled evaluations of each scheme; 0 turns them off."""
    graphiql: bool = True
    """Serve the GraphiQL IDE on GET /graphql from a browser."""
    introspection: bool = True
    """Answer introspection queries (`__schema`); production may turn it off, and then errors
    suggest no names either ("Did you mean ...?")."""
    federation: bool = False
    """Serve the API as an Apollo Federation 2 subgraph (`Customer` an entity keyed by `id`)."""
    webhook_max_attempts: int = 15
    """Attempts of a webhook delivery before it is marked dead (replayable)."""
    webhook_timeout: float = 10.0
    """Seconds one webhook attempt may take, connect to answer."""
    webhook_backoff_base: float = 5.0
    """Seconds before a failed delivery's first retry; doubled for each retry after it."""
    webhook_backoff_cap: float = 3_600.0
    """The longest wait between two attempts of a delivery."""
    webhook_poll_interval: float = 1.0
    """Seconds between the dispatcher's looks for due deliveries (new ones wake it at once);
    0 turns the dispatcher off in this process."""
    webhook_allow_http: bool = False
    """Accept plain http:// webhook URLs (tests and demos on loopback only)."""
    webhook_allow_private: bool = False
    """Let webhooks reach loopback, private and link-local addresses: for receivers inside your
    own network (on-premises) and tests; off, a tenant cannot make the service call into it."""
    max_query_depth: int = 10
    """Deepest selection nesting a GraphQL query may have."""
    max_query_tokens: int = 2_000
    """Most tokens a GraphQL document may have."""
    max_aliases: int = 30
    """Most aliases a GraphQL document may use."""
    max_operations: int = 5
    """Operation definitions one request's document may hold (batched requests are refused)."""
    max_page_size: int = 100
    """The cap on `first` of paginated fields."""
    max_query_cost: int = 2_000
    """The most an operation may cost, in rows of work estimated from the document before it
    runs (pages multiplied down the nesting, whole-tenant fields such as `totalCount` and
    `where` at 100 each, evaluations at 1,000; docs/operations.md lists each documented
    operation's); over it, LIMIT_EXCEEDED with the cost, and nothing runs."""
    tenant_cost_budget: int = 2_000
    """The most the operations of one tenant running at once in a process may cost together
    (one of the heaviest allowed, or many light ones): past it, the tenant's next operations
    wait, holding nothing, for at most `statement_timeout` (then TIMEOUT); other tenants' go
    on."""
    max_ingest_rows: int = 10_000
    """Rows one ingest mutation may carry, or ids one deletion (bigger loads: `tierwise import`
    and `tierwise delete`)."""
    max_request_bytes: int = 10_000_000
    """Largest HTTP request body accepted, in bytes (413 beyond it, before anything is parsed):
    room for an ingest mutation of `max_ingest_rows` rows."""
    statement_timeout: float = 30.0
    """Seconds one database statement of an API request may run before Postgres stops it (the
    request gets TIMEOUT); also the longest a request waits for a database connection. 0: no
    bound."""
    batch_statement_timeout: float = 600.0
    """The same bound for evaluation runs (publishing, the schedule, `evaluateScheme`,
    previews), imports (`tierwise import` and the ingest mutations) and rollup rebuilds."""
    idle_in_transaction_timeout: float = 60.0
    """Seconds a connection may sit idle inside an open transaction before Postgres ends the
    session, so nothing stuck holds locks and a connection for good. 0: no bound."""
    tenant_connections: int = 8
    """Most pooled database connections one tenant's work may hold at once in a process (the
    pool has 20): a tenant's heavy requests queue behind each other, not in front of other
    tenants'."""
    request_connections: int = 4
    """Most database connections one API request (or one WebSocket connection) may hold at
    once; the rest of its work queues for them."""
    auth_required: bool = True
    """Refuse requests without a valid bearer token. Off (development only), every request
    acts as admin of the default tenant or of the ``X-Tierwise-Tenant`` header."""
    id_key: SecretStr | None = None
    """The secret (at least 16 characters) the ids of strategies, webhooks, deliveries, runs and
    audit entries are encrypted with before users see them; unset: the random key migration
    0015 stored in the database. Every process of a deployment must agree, and changing it
    changes every such id."""
    jwt_secret: SecretStr | None = None
    """The HS256 secret JWTs are signed with (at least 32 bytes)."""
    jwt_public_keys: str | None = None
    """PEM public keys (RSA, or EC on P-256/384/521) for RS*/ES* JWTs, or a file holding them."""
    jwt_issuer: str | None = None
    """When set, a JWT's ``iss`` must be this."""
    jwt_audience: str | None = None
    """When set, a JWT's ``aud`` must include this."""
    jwt_tenant_claim: str = "tenant"
    """The JWT claim naming the caller's tenant."""
    jwt_role_claim: str = "role"
    """The JWT claim naming the caller's role (viewer, analyst, ingest, admin)."""
    api_key_cache_seconds: float = 30.0
    """How long a verified API key is trusted without asking the database: the most time a
    revoked key keeps working."""
    rate_limit_per_minute: float = 600.0
    """Requests per minute each token (API key, or JWT subject) may make; 0 turns it off."""
    rate_limit_burst: int = 60
    """Requests a token may make at once above the steady rate."""
    auth_failures_per_minute: float = 30.0
    """Failed authentications per minute one client address may make before its failures are
    answered 429 without a database lookup (keys it has already proven stay served); 0 turns
    it off."""
    auth_failure_burst: int = 20
    """Failed authentications one client address may make at once above that rate."""
    metrics: bool = True
    """Serve Prometheus metrics at `/metrics` (unauthenticated: expose it to the internal
    network only)."""
    shutdown_timeout: int = 30
    """Seconds `serve` waits on SIGTERM for in-flight requests and a running scheduled
    evaluation to finish before cancelling them (their transactions roll back)."""

    @field_validator("id_key")
    @classmethod
    def _id_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must have at least 16 characters")
        return value


def recommended_workers() -> int:
    """The README's worker count for this machine: one per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-``None`` overrides (CLI options) on top."""
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)  # type: ignore[arg-type]
