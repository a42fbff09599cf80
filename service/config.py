"""Configuration from ``TIERWISE_*`` environment variables (and their CLI overrides)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    """Everything Tierwise reads from its environment; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="TIERWISE_", extra="ignore")

    database_url: str | None = None
    """A plain ``postgresql://user@host:port/db`` URL; unset means the embedded Postgres."""
    data_dir: Path = Path(".tierwise")
    """Where the embedded Postgres keeps its files."""
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: LogLevel = "info"
    default_tenant: str = "default"
    evaluation_interval: float = 86_400.0
    """Seconds between scheduled evaluations of each scheme; 0 turns them off."""
    graphiql: bool = True
    """Serve the GraphiQL IDE on GET /graphql from a browser."""
    introspection: bool = True
    """Answer introspection queries (`__schema`); production may turn it off."""
    federation: bool = False
    """Serve the API as an Apollo Federation 2 subgraph (`Customer` an entity keyed by `id`)."""
    max_query_depth: int = 10
    max_query_tokens: int = 2_000
    max_aliases: int = 30
    max_operations: int = 5
    """Operation definitions one request's document may hold (batched requests are refused)."""
    max_page_size: int = 100
    """The cap on `first` of paginated fields."""
    max_ingest_rows: int = 10_000
    """Rows one ingest mutation may carry (bigger loads: `tierwise import`)."""


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-``None`` overrides (CLI options) on top."""
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)  # type: ignore[arg-type]
