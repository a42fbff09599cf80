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


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with non-``None`` overrides (CLI options) on top."""
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)  # type: ignore[arg-type]
