"""The `tierwise` command as a user runs it: a real process, a real database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.database import plain_url
from service.db.tables import customers, events, orders
from tests.support import admin, tierwise


def test_help_lists_every_command(database: URL) -> None:
    result = tierwise(database, "--help")
    assert result.returncode == 0
    commands = result.stdout.split("Commands:\n")[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.startswith("  ")}
    assert {"serve", "demo", "migrate", "import", "rules", "rollups", "export"} <= listed
    assert {"strategies", "segments", "keys"} <= listed


def test_help_names_values_and_reads_as_written(database: URL) -> None:
    """Options say what they take (`--scheme SCHEME`), not a Python type (`<str>`, `<bool>`);
    nothing in brackets is swallowed as markup ("Tenant to work in ."), and sentences are
    wrapped to the terminal, not where the docstring's lines end."""
    for command in (
        ("segments",),
        ("export",),
        ("strategies", "save"),
        ("rules", "preview"),
        ("keys", "create"),
        ("serve",),
    ):
        result = tierwise(database, *command, "--help")
        assert result.returncode == 0, result.stderr
        text = result.stdout
        for typed in ("<str>", "<bool>", "<int>", "<list[str]>", "<text|json>"):
            assert typed not in text, (command, text)
        assert " ." not in text and " ," not in text, (command, text)
    segments = tierwise(database, "segments", "--help").stdout
    assert "--scheme SCHEME" in segments and "--format text|json" in segments
    assert "--tenant TENANT" in segments and "TIERWISE_DEFAULT_TENANT" in segments
    serve = tierwise(database, "serve", "--help").stdout
    assert "TIERWISE_HOST" in serve
    evaluate = tierwise(database, "evaluate", "--help").stdout
    assert "backtest them --as-of a past date." in " ".join(evaluate.split())


def test_invalid_settings_are_named_in_one_message(
    database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setting the environment gets wrong is named as it is set, with what was given (never
    a secret's value): no traceback."""
    monkeypatch.setenv("TIERWISE_MAX_QUERY_COST", "lots")
    monkeypatch.setenv("TIERWISE_ID_KEY", "hunter2")
    result = tierwise(database, "keys", "list", "--tenant", "shop")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "TIERWISE_MAX_QUERY_COST: Input should be a valid integer" in result.stderr
    assert "(got 'lots')" in result.stderr
    assert "TIERWISE_ID_KEY: Value error, must have at least 16 characters" in result.stderr
    assert "hunter2" not in result.stderr


def test_migrate_reports_the_revision(database: URL) -> None:
    result = tierwise(database, "migrate")
    assert result.returncode == 0, result.stderr
    assert "database schema at revision" in result.stdout


def test_import_then_reimport(database: URL, tenant: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\no1,c1,2026-01-01,10\n")
    first = tierwise(database, "import", "orders", str(path), "--tenant", tenant)
    assert first.returncode == 0, first.stderr
    assert "1 orders inserted" in first.stdout and "1 new customers created" in first.stdout
    again = tierwise(database, "import", "orders", str(path), "--tenant", tenant)
    assert "0 orders inserted, 0 updated, 1 unchanged" in again.stdout


def test_a_bad_file_gives_one_clear_message(database: URL, tenant: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer_id,ordered_at,amount\no1,c1,2026-01-01,ten\n")
    result = tierwise(database, "import", "orders", str(path), "--tenant", tenant)
    assert result.returncode == 1
    assert f"{path}:2: amount: 'ten' is not a number" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_skip_bad_writes_the_rejects(database: URL, tenant: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,ordered_at,amount\no1,c1,2026-01-01,ten\no2,c1,2026-01-02,3\n"
    )
    rejects = tmp_path / "rejects.csv"
    result = tierwise(
        database, "import", "orders", str(path), "--tenant", tenant, "--skip-bad", str(rejects)
    )
    assert result.returncode == 0, result.stderr
    assert "1 bad rows skipped" in result.stdout
    assert "o1" in rejects.read_text() and "o2" not in rejects.read_text()


def test_a_wrong_database_url_is_explained() -> None:
    result = tierwise("mysql://root@localhost/x", "migrate", timeout=60)
    assert result.returncode == 1
    assert "TIERWISE_DATABASE_URL must start with postgresql://" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_explained() -> None:
    result = tierwise("postgresql://nobody@127.0.0.1:1/none", "migrate", timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: database: cannot connect to TIERWISE_DATABASE_URL "
        "(postgresql://nobody@127.0.0.1:1/none): "
    )
    assert "Traceback" not in result.stderr


def test_outside_its_folder_a_command_says_where_it_looked(tmp_path: Path) -> None:
    """No database configured and none in this folder: say so, and make no new one (it
    used to start an empty embedded Postgres and fail on `role "tierwise_app"`)."""
    (tmp_path / "x.rules").write_text("tier A otherwise\n")
    for args in (("segments",), ("rules", "preview", "x.rules", "--scheme", "s"), ("serve",)):
        result = tierwise(None, *args, cwd=tmp_path, timeout=60)
        assert result.returncode == 1, args
        assert result.stderr.startswith(
            f"error: no Tierwise database here: looked for the embedded Postgres in "
            f"{tmp_path.resolve() / '.tierwise'} (TIERWISE_DATA_DIR)"
        ), result.stderr
        assert "set TIERWISE_DATABASE_URL to a Postgres server" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / ".tierwise").exists()


async def test_a_database_without_the_schema_is_explained(database: URL, tenant: str) -> None:
    empty = database.set(database=f"{database.database}_empty")
    await admin(empty, f'CREATE DATABASE "{empty.database}"')
    try:
        result = tierwise(empty, "segments", "--tenant", tenant, timeout=60)
    finally:
        await admin(empty, f'DROP DATABASE "{empty.database}" WITH (FORCE)')
    assert result.returncode == 1
    assert result.stderr.startswith("error: TIERWISE_DATABASE_URL (postgresql://")
    assert (
        f"/{empty.database}" in result.stderr
        and ") holds no Tierwise tables: `tierwise migrate` sets them up there" in result.stderr
    ), result.stderr


async def test_demo_loads_data(database: URL, engine: AsyncEngine) -> None:
    result = tierwise(database, "demo", "--customers", "300", "--seed", "5", "--no-serve")
    assert result.returncode == 0, result.stderr
    assert "demo orders:" in result.stdout
    # 227 of the 300 buy on more than one day: enough to fit the models.
    assert "fitted the prediction models on 278 customers (227 repeat buyers)" in result.stdout
    async with engine.connect() as connection:
        counts = {
            table.name: await connection.scalar(
                select(func.count()).select_from(table).where(table.c.tenant_id == "default")
            )
            for table in (customers, orders, events)
        }
    assert counts["customers"] >= 300 and counts["orders"] > 300 and counts["events"] > 0
    report = json.loads(tierwise(database, "segments", "--format", "json").stdout)
    assert {row["scheme"] for row in report} == {
        "value",
        "lifecycle",
        "rfm",
        "abc",
        "declining",
        "clv",
        "churn_risk",
    }
    clv = {row["tier"]: row["customers"] for row in report if row["scheme"] == "clv"}
    assert 20 <= clv["Top"] <= 35 and 75 <= clv["High"] <= 95  # a tenth, three of 278 buyers
    # every customer has a tier in these
    for scheme in ("value", "lifecycle", "abc", "declining", "clv", "churn_risk"):
        assert (
            sum(row["customers"] for row in report if row["scheme"] == scheme)
            == counts["customers"]
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_answers_health_and_stops_on_sigterm(database: URL) -> None:
    port = _free_port()
    env = {**os.environ, "TIERWISE_DATABASE_URL": plain_url(database)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from service.cli import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = _get_when_up(f"http://127.0.0.1:{port}/readyz")
        assert '"status":"ok"' in body.replace(" ", "")
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "Application shutdown complete." in output


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes of a `tierwise serve` process (Linux /proc)."""
    with open(f"/proc/{pid}/task/{pid}/children") as found:
        children = [int(child) for child in found.read().split()]
    workers = []
    for child in children:
        with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as cmdline:
            if b"spawn_main" in cmdline.read():
                workers.append(child)
    return workers


TIERWISE = [sys.executable, "-c", "from service.cli import main; main()"]


def test_serve_with_two_workers_answers_and_stops_on_sigterm(database: URL, tenant: str) -> None:
    """`serve --workers 2`: two worker processes on one port answer GraphQL in the tenant (row-
    level security on every one); SIGTERM stops both gracefully and the command exits 0."""
    port = _free_port()
    env = {
        **os.environ,
        "TIERWISE_DATABASE_URL": plain_url(database),
        "TIERWISE_AUTH_REQUIRED": "false",
        "TIERWISE_DEFAULT_TENANT": tenant,
        "TIERWISE_EVALUATION_INTERVAL": "0",
    }
    server = subprocess.Popen(
        [*TIERWISE, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    workers: list[int] = []
    try:
        assert '"status":"ok"' in _get_when_up(f"http://127.0.0.1:{port}/readyz").replace(" ", "")
        deadline = time.monotonic() + 60
        while len(workers := _workers_of(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2
        query = json.dumps({"query": "{ schemes { key } }"}).encode()
        for _ in range(20):  # a new connection each: the kernel hands them to either worker
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=query,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert json.loads(response.read()) == {"data": {"schemes": []}}
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert output.count("Application shutdown complete.") == 2, output
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], output


def _get_when_up(url: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer within 60 s")
            time.sleep(0.2)


def test_currency_and_rates_from_the_command_line(
    database: URL, tenant: str, tmp_path: Path
) -> None:
    """`tierwise currency` shows and sets the reporting currency; `tierwise import rates`
    takes a rates file; an order without a rate is refused with its line, naming currency
    and date; with its rate it lands converted."""
    shown = tierwise(database, "currency", "--tenant", tenant)
    assert shown.returncode == 0 and "reporting currency EUR" in shown.stdout
    assert (
        "reporting currency USD" in tierwise(database, "currency", "USD", "--tenant", tenant).stdout
    )
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,customer_id,ordered_at,amount,currency\no1,c1,2026-02-20,3000,JPY\n"
    )
    refused = tierwise(database, "import", "orders", str(orders), "--tenant", tenant)
    assert refused.returncode == 1
    assert "orders.csv:2: currency: no exchange rate for JPY on 2026-02-20" in refused.stderr
    assert "Traceback" not in refused.stderr
    rates = tmp_path / "rates.csv"
    rates.write_text("currency,date,rate\nJPY,2026-01-01,0.0067\n")
    imported = tierwise(database, "import", "rates", str(rates), "--tenant", tenant)
    assert imported.returncode == 0, imported.stderr
    assert "1 rates inserted" in imported.stdout
    assert tierwise(database, "import", "orders", str(orders), "--tenant", tenant).returncode == 0
    late = tierwise(database, "currency", "EUR", "--tenant", tenant)
    assert late.returncode == 1 and "set before the first import" in late.stderr
