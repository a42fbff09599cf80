"""Soak test: minutes of concurrent ingest, evaluation runs and reads against one real
`tierwise serve`, then a reckoning.

    TIERWISE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python benchmarks/soak.py --minutes 5

1. Creates a fresh database ``tw_soak_<pid>`` on that server (dropped at the end unless
   ``--keep``), migrates it, imports ``--customers`` customers, publishes the four built-in
   templates (value, lifecycle, rfm, abc) with their strategies and evaluates them.
2. Starts `tierwise serve` as a subprocess on a free loopback port (JSON logs to a file,
   scheduled evaluations every ``--evaluation-interval`` seconds, HS256 bearer tokens, rate
   limit off: the soak is one caller at full speed) and for ``--minutes`` runs at once:
   ``--writers`` clients posting `recordOrders` batches of new orders (some for new
   customers); one importer running `tierwise import orders` on a fresh file every
   ``--import-every`` seconds, a tenth of each file being orders already sent (idempotency);
   one client calling `evaluateScheme` on each scheme in turn every ``--evaluate-every``
   seconds; ``--readers`` clients running the documented operations (customer card, segment
   list, segment members pages). The server's RSS is sampled every 5 s.
3. Sends SIGTERM and requires exit status 0, then checks: zero errors (client-side: HTTP
   status, GraphQL errors, failed imports; server-side: error lines in its log); no lost
   orders (the database holds exactly the distinct order ids sent, with their amounts);
   rollups equal a recomputation from the orders; the memberships of every scheme that
   incremental updates keep current equal a full recomputation now (a preview moves no one),
   without a final run. Order times are whole days (midnight UTC), so the tiers do not move
   by the clock during the soak unless it spans midnight UTC.

Exit status 1 when any check fails. The report (JSON with ``--json``) gives the counts,
latencies, the RSS at start, end and maximum, and the metrics the server exported.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from service.data import rollups
from service.data.ingest import import_rows
from service.data.records import Kind
from service.db import migrate
from service.db.database import async_url, create_engine, plain_url, tenant_transaction
from service.db.tables import tenants
from service.engine import evaluation, schemes, strategies
from service.engine.templates import TEMPLATES

ROOT = Path(__file__).resolve().parent.parent
TENANT = "soak"
SECRET = secrets.token_hex(32)
TODAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)

RECORD_ORDERS = """
mutation Record($orders: [OrderInput!]!) {
  recordOrders(orders: $orders) { received inserted updated unchanged errors { row message } }
}"""
EVALUATE = "mutation Evaluate($scheme: String!) { evaluateScheme(scheme: $scheme) { changed } }"
OPERATIONS = {
    name: (ROOT / "graphql" / "operations" / f"{name}.graphql").read_text()
    for name in ("customer_card", "segment_list", "segment_members")
}


@dataclass
class Tally:
    """What the clients did and saw."""

    sent: dict[str, Decimal] = field(default_factory=dict)  # order id -> amount
    customers: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    imports: int = 0
    imported_rows: int = 0
    evaluations: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)

    def time(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)

    def error(self, message: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(message)
        else:
            self.errors.append("...")


def _day(days_ago: int) -> str:
    return (TODAY - dt.timedelta(days=days_ago)).isoformat()


def _amount(generator: random.Random) -> Decimal:
    return Decimal(generator.randrange(100, 400_000)) / 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _token() -> str:
    from service.access.auth import Role, issue_token

    return issue_token(SECRET, TENANT, Role.admin, "soak")


async def _admin(server: URL, statement: str) -> None:
    engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def setup(url: URL, customers: int, seed: int) -> None:
    await _admin(url, f'CREATE DATABASE "{url.database}"')
    engine = create_engine(url, pool_size=2, max_overflow=2)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(tenants.insert().values(id=TENANT, name="Soak"))
        generator = random.Random(seed)
        people = [
            (
                line,
                {
                    "customer_id": f"c{number}",
                    "name": f"Customer {number}",
                    "region": generator.choice(["north", "south", "east", "west"]),
                    "registered_at": _day(generator.randrange(1, 900)),
                },
            )
            for line, number in enumerate(range(customers), 2)
        ]
        await import_rows(engine, Kind.customers, TENANT, people, source="soak")
        history = [
            (
                line,
                {
                    "order_id": f"h{number}",
                    "customer_id": f"c{generator.randrange(customers)}",
                    "ordered_at": _day(generator.randrange(1, 500)),
                    "amount": str(_amount(generator)),
                },
            )
            for line, number in enumerate(range(customers * 3), 2)
        ]
        await import_rows(engine, Kind.orders, TENANT, history, source="soak")
        for template in TEMPLATES.values():
            async with tenant_transaction(engine, TENANT) as connection:
                await schemes.publish(connection, TENANT, template.source, file=template.file)
                await strategies.install_template(connection, TENANT, template)
        await evaluation.evaluate_all(engine, TENANT, trigger="soak")
    finally:
        await engine.dispose()


def _environment(url: URL, port: int, interval: float) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TIERWISE_DATABASE_URL": plain_url(url),
        "TIERWISE_PORT": str(port),
        "TIERWISE_DEFAULT_TENANT": TENANT,
        "TIERWISE_JWT_SECRET": SECRET,
        "TIERWISE_RATE_LIMIT_PER_MINUTE": "0",
        "TIERWISE_EVALUATION_INTERVAL": str(interval),
        "TIERWISE_LOG_FORMAT": "json",
        "TIERWISE_GRAPHIQL": "false",
    }


async def _graphql(
    client: httpx.AsyncClient,
    tally: Tally,
    kind: str,
    query: str,
    variables: dict[str, Any],
) -> dict[str, Any] | None:
    started = time.perf_counter()
    try:
        response = await client.post("/graphql", json={"query": query, "variables": variables})
    except httpx.HTTPError as error:
        tally.error(f"{kind}: {error!r}")
        return None
    tally.time(kind, time.perf_counter() - started)
    if response.status_code != 200:
        tally.error(f"{kind}: HTTP {response.status_code}: {response.text[:300]}")
        return None
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        tally.error(f"{kind}: {json.dumps(body['errors'])[:300]}")
        return None
    return body


async def writer(
    client: httpx.AsyncClient, tally: Tally, number: int, customers: int, until: float
) -> None:
    generator = random.Random(1000 + number)
    sequence = 0
    while time.monotonic() < until:
        batch = []
        for _ in range(20):
            sequence += 1
            new_customer = generator.random() < 0.05
            customer = (
                f"w{number}-{sequence}" if new_customer else f"c{generator.randrange(customers)}"
            )
            batch.append(
                {
                    "id": f"w{number}-{sequence}",
                    "customerId": customer,
                    "orderedAt": _day(generator.randrange(0, 400)),
                    "amount": str(_amount(generator)),
                }
            )
            tally.customers += new_customer
        body = await _graphql(client, tally, "recordOrders", RECORD_ORDERS, {"orders": batch})
        if body is not None:
            result = body["data"]["recordOrders"]
            if result["errors"] or result["inserted"] != len(batch):
                tally.error(f"recordOrders: {result}")
            for row in batch:
                tally.sent[row["id"]] = Decimal(row["amount"])


async def importer(
    url: URL, port: int, tally: Tally, customers: int, every: float, until: float, folder: Path
) -> None:
    """`tierwise import orders` of a new file every ``every`` seconds: 4,500 new orders and
    450 lines of the previous file again, as they were (idempotent: unchanged)."""
    generator = random.Random(7)
    environment = _environment(url, port, 0)
    previous: list[list[str]] = []
    while time.monotonic() + every < until:
        await asyncio.sleep(every)
        tally.imports += 1
        path = folder / f"import-{tally.imports}.csv"
        lines = [
            [
                f"i{tally.imports}-{number}",
                f"c{generator.randrange(customers)}",
                _day(generator.randrange(0, 400)),
                str(_amount(generator)),
            ]
            for number in range(4_500)
        ]
        with path.open("w", newline="") as file:
            out = csv.writer(file)
            out.writerow(["order_id", "customer_id", "ordered_at", "amount"])
            out.writerows(lines + previous[:450])
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from service.cli import main; main()",
            "import",
            "orders",
            str(path),
            "--tenant",
            TENANT,
            cwd=ROOT,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await process.communicate())[0].decode()
        tally.time("import", time.perf_counter() - started)
        if process.returncode != 0:
            tally.error(f"import {path.name}: exit {process.returncode}: {output[-500:]}")
            continue
        expected = f"{len(lines)} orders inserted, 0 updated, {min(len(previous), 450)} unchanged"
        if expected not in output:
            tally.error(f"import {path.name}: expected {expected!r}, got {output.strip()!r}")
        tally.imported_rows += len(lines)
        for order_id, _, _, amount in lines:
            tally.sent[order_id] = Decimal(amount)
        previous = lines


async def evaluator(client: httpx.AsyncClient, tally: Tally, every: float, until: float) -> None:
    keys = list(TEMPLATES)
    while time.monotonic() + every < until:
        await asyncio.sleep(every)
        scheme = keys[tally.evaluations % len(keys)]
        tally.evaluations += 1
        await _graphql(client, tally, "evaluateScheme", EVALUATE, {"scheme": scheme})


async def reader(
    client: httpx.AsyncClient, tally: Tally, number: int, customers: int, until: float
) -> None:
    generator = random.Random(2000 + number)
    tiers = {"value": ["VIP", "Normal"], "rfm": ["Champions", "Hibernating"]}
    while time.monotonic() < until:
        choice = generator.random()
        if choice < 0.6:
            variables = {"id": f"c{generator.randrange(customers)}", "scheme": "value"}
            await _graphql(client, tally, "CustomerCard", OPERATIONS["customer_card"], variables)
        elif choice < 0.75:
            await _graphql(client, tally, "SegmentList", OPERATIONS["segment_list"], {})
        else:
            scheme = generator.choice(list(tiers))
            variables: dict[str, Any] = {
                "scheme": scheme,
                "tier": generator.choice(tiers[scheme]),
                "first": 50,
            }
            for _ in range(3):  # three pages
                body = await _graphql(
                    client, tally, "SegmentMembers", OPERATIONS["segment_members"], variables
                )
                if body is None:
                    break
                page = body["data"]["customers"]["pageInfo"]
                if not page["hasNextPage"]:
                    break
                variables["after"] = page["endCursor"]


async def sample_rss(pid: int, tally: Tally, until: float) -> None:
    started = time.monotonic()
    while time.monotonic() < until:
        tally.rss.append((time.monotonic() - started, _rss_kib(pid)))
        await asyncio.sleep(5)
    tally.rss.append((time.monotonic() - started, _rss_kib(pid)))


async def _wait_until_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base) as client:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"tierwise serve exited with {process.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("tierwise serve never became ready")
            await asyncio.sleep(0.2)


def _metric_lines(exposition: str, prefixes: tuple[str, ...]) -> list[str]:
    return [
        line
        for line in exposition.splitlines()
        if line.startswith(prefixes) and not line.startswith("#")
    ]


async def verify(url: URL, tally: Tally) -> dict[str, Any]:
    """The database against what was sent; memberships against a full recomputation."""
    engine = create_engine(url, pool_size=2, max_overflow=2)
    checks: dict[str, Any] = {}
    try:
        async with tenant_transaction(engine, TENANT) as connection:
            stored = dict(
                (
                    await connection.execute(
                        text(
                            "SELECT external_id, amount FROM orders"
                            " WHERE tenant_id = :t AND external_id NOT LIKE 'h%'"
                        ),
                        {"t": TENANT},
                    )
                ).all()
            )
            checks["rollup_drift"] = await rollups.drift(connection, TENANT)
            published = await schemes.current(connection, TENANT)
        missing = set(tally.sent) - set(stored)
        extra = set(stored) - set(tally.sent)
        wrong = [key for key in set(stored) & set(tally.sent) if stored[key] != tally.sent[key]]
        checks["orders_sent"] = len(tally.sent)
        checks["orders_stored"] = len(stored)
        checks["orders_missing"] = len(missing)
        checks["orders_unexpected"] = len(extra)
        checks["orders_wrong_amount"] = len(wrong)
        moved: dict[str, int] = {}
        for scheme in published:
            if scheme.uses_population:
                continue  # ranks follow at full runs only (README): nothing to compare
            (preview,) = await evaluation.preview(engine, TENANT, scheme.source)
            moved[scheme.key] = sum(cell.customers for cell in preview.moves)
        checks["moves_against_full_recomputation"] = moved
    finally:
        await engine.dispose()
    return checks


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def soak(arguments: argparse.Namespace) -> int:
    server = async_url(arguments.database_url)
    url = server.set(database=f"tw_soak_{os.getpid()}")
    print(f"setting up {url.database}: {arguments.customers} customers ...", file=sys.stderr)
    await setup(url, arguments.customers, seed=42)
    tally = Tally()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    folder = Path(tempfile.mkdtemp(prefix="tierwise-soak-"))
    log = folder / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", "from service.cli import main; main()", "serve"],
            cwd=ROOT,
            env=_environment(url, port, arguments.evaluation_interval),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    report: dict[str, Any] = {"database": url.database, "minutes": arguments.minutes}
    try:
        await _wait_until_up(base, process)
        print(f"soaking for {arguments.minutes} minutes against {base} ...", file=sys.stderr)
        started = time.monotonic()
        until = started + arguments.minutes * 60
        headers = {"Authorization": f"Bearer {_token()}"}
        limits = httpx.Limits(max_connections=arguments.writers + arguments.readers + 2)
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=120, limits=limits
        ) as client:
            await asyncio.gather(
                sample_rss(process.pid, tally, until),
                importer(
                    url, port, tally, arguments.customers, arguments.import_every, until, folder
                ),
                evaluator(client, tally, arguments.evaluate_every, until),
                *(
                    writer(client, tally, n, arguments.customers, until)
                    for n in range(arguments.writers)
                ),
                *(
                    reader(client, tally, n, arguments.customers, until)
                    for n in range(arguments.readers)
                ),
            )
            elapsed = time.monotonic() - started
            exposition = (await client.get("/metrics")).text
        process.send_signal(signal.SIGTERM)
        exit_status = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    server_errors = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            server_errors.append(line)
            continue
        if record.get("level") in ("error", "critical"):
            server_errors.append(
                record.get("message", "") + str(record.get("exception", ""))[-300:]
            )
    checks = await verify(url, tally)
    rss = [kib for _, kib in tally.rss]
    report.update(
        {
            "elapsed_s": round(elapsed, 1),
            "exit_status": exit_status,
            "client_errors": len(tally.errors),
            "client_error_samples": tally.errors[:5],
            "server_error_lines": len(server_errors),
            "server_error_samples": server_errors[:5],
            "orders_via_api": len(tally.sent) - tally.imported_rows,
            "orders_via_import": tally.imported_rows,
            "imports": tally.imports,
            "evaluations_requested": tally.evaluations,
            "new_customers_via_api": tally.customers,
            "requests": {
                kind: {
                    "count": len(values),
                    "per_s": round(len(values) / elapsed, 1),
                    "p50_ms": round(statistics.median(values) * 1000, 1),
                    "p99_ms": round(_percentile(values, 0.99) * 1000, 1),
                }
                for kind, values in sorted(tally.latencies.items())
            },
            "rss_mib": {
                "start": round(rss[0] / 1024, 1),
                "end": round(rss[-1] / 1024, 1),
                "max": round(max(rss) / 1024, 1),
                "samples": len(rss),
                # Whether it levels off: the largest sample of each minute.
                "per_minute_max": [
                    round(max(kib for at, kib in tally.rss if int(at // 60) == minute) / 1024, 1)
                    for minute in sorted({int(at // 60) for at, _ in tally.rss})
                ],
            },
            "server_metrics": _metric_lines(
                exposition,
                (
                    "tierwise_evaluation_runs_total",
                    "tierwise_ingest_rows_total",
                    "tierwise_db_pool",
                    "process_resident_memory_bytes",
                ),
            ),
            **checks,
        }
    )
    if not arguments.keep:
        await _admin(url, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    failed = [
        name
        for name, bad in (
            ("exit status", exit_status != 0),
            ("client errors", bool(tally.errors)),
            ("server errors", bool(server_errors)),
            (
                "lost or unexpected orders",
                bool(checks["orders_missing"] or checks["orders_unexpected"]),
            ),
            ("wrong amounts", bool(checks["orders_wrong_amount"])),
            ("rollup drift", bool(checks["rollup_drift"])),
            ("memberships differ", any(checks["moves_against_full_recomputation"].values())),
        )
        if bad
    ]
    report["failed"] = failed
    print(json.dumps(report, indent=2))
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TIERWISE_DATABASE_URL"),
        help="A Postgres server (default: TIERWISE_DATABASE_URL); a fresh database is made on it.",
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--import-every", type=float, default=20.0)
    parser.add_argument("--evaluate-every", type=float, default=10.0)
    parser.add_argument("--evaluation-interval", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    arguments = parser.parse_args()
    if not arguments.database_url:
        parser.error(
            "give --database-url or set TIERWISE_DATABASE_URL (a server: the soak "
            "measures one, not the embedded Postgres)"
        )
    sys.exit(asyncio.run(soak(arguments)))


if __name__ == "__main__":
    main()
