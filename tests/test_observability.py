"""Operations: /metrics moves with requests, operations, runs and loads; every request has an
id (the gateway's or a new one), echoed back and on every log line written while it runs."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service import logs
from service.app import create_app
from service.config import Settings
from service.db.database import create_engine
from service.engine import evaluation
from tests.support import VALUE, load, order, publish

SETTINGS = Settings(auth_required=False)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _client_get(
    engine: AsyncEngine, path: str, headers: dict[str, str] | None = None, **settings: object
) -> httpx.Response:
    config = Settings(auth_required=False, **settings)  # type: ignore[arg-type]
    app = create_app(engine, settings=config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        return await client.get(path, headers=headers or {})


async def _graphql(
    engine: AsyncEngine, tenant: str, query: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(engine, settings=SETTINGS))
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise") as client:
        return await client.post(
            "/graphql",
            json={"query": query},
            headers={"X-Tierwise-Tenant": tenant, **(headers or {})},
        )


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged during the test, as JSON lines."""
    stream = io.StringIO()
    logs.configure("info", "json", stream)
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logs._Handler):
            root.removeHandler(handler)


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


async def test_metrics_are_served_in_the_prometheus_format(engine: AsyncEngine) -> None:
    response = await _client_get(engine, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "tierwise_http_requests_total",
        "tierwise_graphql_operations_total",
        "tierwise_evaluation_run_duration_seconds",
        "tierwise_ingest_rows_total",
        "tierwise_webhook_deliveries_total",
        "tierwise_db_pool_size",
        "tierwise_db_pool_checked_out",
        "process_resident_memory_bytes",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


async def test_metrics_can_be_turned_off(engine: AsyncEngine) -> None:
    assert (await _client_get(engine, "/metrics", metrics=False)).status_code == 404


async def test_http_requests_are_counted_by_route_path(engine: AsyncEngine) -> None:
    healthz = {"method": "GET", "path": "/healthz", "status": "200"}
    other = {"method": "GET", "path": "other", "status": "404"}
    before = (
        sample("tierwise_http_requests_total", **healthz),
        sample("tierwise_http_requests_total", **other),
    )
    await _client_get(engine, "/healthz")
    await _client_get(engine, "/no/such/page/42")
    after = (
        sample("tierwise_http_requests_total", **healthz),
        sample("tierwise_http_requests_total", **other),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert sample("tierwise_http_request_duration_seconds_count", method="GET", path="/healthz")


async def test_graphql_operations_are_counted_by_name_type_and_outcome(
    engine: AsyncEngine, tenant: str
) -> None:
    ok = {"operation": "Probe", "type": "query", "outcome": "ok"}
    failed = {"operation": "Broken", "type": "query", "outcome": "error"}
    before = [sample("tierwise_graphql_operations_total", **labels) for labels in (ok, failed)]
    assert (await _graphql(engine, tenant, "query Probe { __typename }")).status_code == 200
    await _graphql(engine, tenant, 'query Broken { customer(id: "x") { noSuchField } }')
    after = [sample("tierwise_graphql_operations_total", **labels) for labels in (ok, failed)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]
    assert sample(
        "tierwise_graphql_operation_duration_seconds_count", operation="Probe", type="query"
    )


async def test_runs_and_loads_are_counted(engine: AsyncEngine, tenant: str) -> None:
    inserted = {"kind": "orders", "outcome": "inserted"}
    rows_before = sample("tierwise_ingest_rows_total", **inserted)
    runs_before = sample("tierwise_evaluation_runs_total", trigger="test", kind="applied")
    customers_before = sample("tierwise_evaluation_run_customers_sum", kind="applied")
    await load(engine, tenant, [order("o1", "a", 3, "6000"), order("o2", "b", 4, "10")])
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value", trigger="test")
    assert sample("tierwise_ingest_rows_total", **inserted) - rows_before == 2
    assert sample("tierwise_evaluation_runs_total", trigger="test", kind="applied") == (
        runs_before + 1
    )
    assert sample("tierwise_evaluation_run_customers_sum", kind="applied") - customers_before == 2


async def test_pool_gauges_are_read_at_scrape_time(database: URL) -> None:
    engine = create_engine(database, pool_size=3, max_overflow=3)
    try:
        create_app(engine, settings=SETTINGS)
        base = sample("tierwise_db_pool_checked_out")
        async with engine.connect():
            assert sample("tierwise_db_pool_checked_out") == base + 1
        assert sample("tierwise_db_pool_checked_out") == base
        assert sample("tierwise_db_pool_size") >= 3
        assert sample("tierwise_db_pool_max") >= 6
    finally:
        await engine.dispose()


async def test_the_gateways_request_id_is_echoed(engine: AsyncEngine) -> None:
    response = await _client_get(engine, "/healthz", {"X-Request-ID": "gw-7f3a:01"})
    assert response.headers["x-request-id"] == "gw-7f3a:01"


@pytest.mark.parametrize("given", [None, "has spaces", "x" * 200])
async def test_a_request_id_is_made_when_absent_or_unusable(
    engine: AsyncEngine, given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given else {}
    response = await _client_get(engine, "/healthz", headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_masked_errors_are_logged_as_json_with_the_request_id(
    log_lines: io.StringIO,
) -> None:
    # A database that is not there: the resolver fails unexpectedly, the client sees only
    # "Unexpected error." and the log has the traceback, with the request's id.
    broken = create_engine(URL.create("postgresql+asyncpg", "nobody", host="127.0.0.1", port=1))
    try:
        response = await _graphql(
            broken, "default", '{ customer(id: "c") { id } }', {"X-Request-ID": "req-masked-1"}
        )
    finally:
        await broken.dispose()
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert response.headers["x-request-id"] == "req-masked-1"
    errors = [r for r in _records(log_lines) if r["level"] == "error"]
    assert errors, log_lines.getvalue()
    assert {r["request_id"] for r in errors} == {"req-masked-1"}
    assert all("Traceback" in str(r["exception"]) for r in errors)
    assert all(r["logger"] == "service.api.errors" for r in errors)


async def test_database_errors_are_logged_without_their_parameters(
    engine: AsyncEngine, log_lines: io.StringIO
) -> None:
    """A failed statement put a webhook's secret into the server log: asyncpg and Postgres
    quote values in their messages. The log keeps the traceback, the SQLSTATE and the
    statement, never the message."""
    secret = "whsec_never-in-a-log-line"
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT CAST(:secret AS integer)"), {"secret": secret})
    except DBAPIError as error:
        failed = error
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text("SELECT CAST(CAST(:secret AS text) AS integer)"), {"secret": secret}
            )
    except DBAPIError as error:
        cast = error
    log = logging.getLogger("tierwise.test")
    for error in (failed, cast):
        try:
            raise RuntimeError("while doing something") from error
        except RuntimeError:
            log.exception("it failed")
        log.error("it failed: %s", error)
    assert secret not in log_lines.getvalue()
    records = _records(log_lines)
    assert "Traceback" in records[0]["exception"]
    assert "SELECT CAST($1 AS integer)" in records[0]["exception"]
    assert "while doing something" in records[0]["exception"]
    assert "sqlstate 22P02" in records[3]["message"]  # invalid_text_representation


def test_records_outside_a_request_have_no_request_id(log_lines: io.StringIO) -> None:
    logging.getLogger("tierwise.test").warning("plain %s", "words", extra={"scheme": "value"})
    (record,) = _records(log_lines)
    assert record["message"] == "plain words"
    assert record["request_id"] is None
    assert record["scheme"] == "value"
    assert record["level"] == "warning"


def test_uvicorns_start_up_is_not_logged_as_an_error(log_lines: io.StringIO) -> None:
    # A record as uvicorn's logger makes it, handed to the root handler it propagates to (the
    # logger's own level is whatever an earlier server in this process left it at).
    started = logging.makeLogRecord(
        {
            "name": "uvicorn.error",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "Uvicorn running",
        }
    )
    logging.getLogger().handle(started)
    (record,) = _records(log_lines)
    assert (record["logger"], record["level"]) == ("uvicorn.server", "info")
