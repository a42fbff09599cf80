"""API benchmark: Tierwise's GraphQL against a hand-written Starlette + asyncpg endpoint.

    python benchmarks/bench_api.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/tw_api_bench --reuse

1. Build (skipped with ``--reuse`` when the tenant is evaluated): create the database (only
   names starting ``tw_api_bench``), migrate it, generate the demo data (``service.data.demo_data``
   enlarged to ``--customers``, by ``bench_engine.load``: CSVs kept in ``--data``, imported in
   chunks with ANALYZE), publish the four built-in templates with their strategies and
   evaluate them.
2. Throughput: two servers, each ``uvicorn`` with ``--workers`` worker processes (default:
   the README's recommendation, one per core; each builds its app from ``served_app``, as
   ``tierwise serve --workers N`` does) and no access log, in subprocesses on loopback: the
   real Tierwise app (``service.app.create_app``, as ``tierwise serve`` builds it, scheduled
   evaluations off) and a minimal Starlette app that runs the same SQL statement Tierwise
   runs for ``customer(id){ tiers { scheme tier } strategies { name } }`` with asyncpg on
   one pooled connection and returns the same JSON (and with ``--baseline DIR``, a third:
   Tierwise from another checkout, e.g. main's, given ``--workers`` if it has it). Pools:
   20 connections kept on both sides, per worker (Tierwise's engine as the service makes
   it). A lean asyncio HTTP/1.1 keep-alive client in this process (``--clients`` concurrent
   connections) posts random existing customer ids for ``--duration`` seconds after
   ``--warmup``, checks every response (status 200 and exactly the expected tiers and
   strategies, read from the database beforehand) and records rps, p50 and p99; over the
   measured seconds also the server's CPU (its processes: parent and workers), the CPU of
   the database's Postgres backends (both from /proc: Linux, Postgres on this machine) and
   the sessions Postgres opened (``pg_stat_database.sessions``), per request. The two
   targets run one after the other for each concurrency level, ``--repeat`` times,
   alternating which goes first.
3. Round trips: the documented segment-members operation (``graphql/operations/``) at first:
   10, 50, 100 over one big tier, as it is and with ``strategies { name }`` added to the node,
   and the customer query, posted to the app in process (httpx over ASGI): SQL statements
   (SQLAlchemy ``before_cursor_execute``, and asyncpg's query log for those the service runs
   through asyncpg directly) and connection checkouts per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from pydantic import SecretStr
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.access.auth import Role, issue_token
from service.api.loaders import CUSTOMER_CARDS
from service.app import create_app
from service.config import Settings, recommended_workers
from service.db import migrate
from service.db.database import POOL_SIZE, Compiled, async_url, create_engine, plain_url
from service.engine import evaluation, schemes, strategies
from service.engine.templates import TEMPLATES

try:
    from benchmarks import bench_engine
except ImportError:  # run as a script: this folder itself is on sys.path
    import bench_engine  # type: ignore[no-redef,import-not-found]

TENANT = "bench"
# Tierwise authenticates every request: the load generator sends an HS256 JWT of role viewer
# (what a frontend sends). The rate limit per token is lifted for the benchmark.
SECRET = "tierwise-api-benchmark-hs256-secret-32-bytes"
POOL = POOL_SIZE  # both: 20 connections, kept (Tierwise's engine as the service makes it)
OPERATIONS = Path(__file__).resolve().parent.parent / "graphql" / "operations"

CUSTOMER_QUERY = (
    "query Customer($id: ID!) { customer(id: $id) { tiers { scheme tier } strategies { name } } }"
)

# The statement Tierwise runs for CUSTOMER_QUERY, exactly (compiled once by the service, run
# by asyncpg): the customer by external id with its memberships and its recommended
# strategies as arrays of rows, in the scalar form for one key.
CARD_SQL = CUSTOMER_CARDS.one


def _arguments(statement: Compiled, tenant: str, key: object) -> list[object]:
    return [{"tenant": tenant, "key": key}[name] for name in statement.names]


# --- 1. data ---------------------------------------------------------------------------------


async def ensure_database(url: str) -> None:
    """Create the database ``url`` names unless it exists (only tw_api_bench* names)."""
    name = make_url(url).database
    if not name or not name.startswith("tw_api_bench"):
        raise SystemExit(f"refusing to build into {name!r}: use a database named tw_api_bench*")
    server = create_engine(async_url(url).set(database="postgres"), pool_size=1)
    try:
        async with server.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            found = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            )
            if not found:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
                print(f"created database {name}")
    finally:
        await server.dispose()


async def evaluated(engine: AsyncEngine, tenant: str) -> bool:
    async with engine.connect() as connection:
        found = await connection.scalar(
            text("SELECT count(*) FROM memberships WHERE tenant_id = :t"), {"t": tenant}
        )
    return bool(found)


async def build(
    engine: AsyncEngine, tenant: str, customers: int, folder: Path, chunk_rows: int
) -> None:
    """The demo data at ``customers`` customers, the templates published and evaluated."""
    await migrate.upgrade(engine)
    folder.mkdir(parents=True, exist_ok=True)
    await bench_engine.load(engine, tenant, customers, folder, chunk_rows)
    if await evaluated(engine, tenant):
        print(f"tenant {tenant}: already evaluated")
        return
    for template in TEMPLATES.values():
        async with engine.begin() as connection:
            await schemes.publish(connection, tenant, template.source, file=template.file)
            await strategies.install_template(connection, tenant, template)
    start = time.perf_counter()
    runs = await evaluation.evaluate_all(engine, tenant, trigger="bench")
    print(
        f"evaluated {', '.join(f'{run.scheme} {run.duration_ms} ms' for run in runs)} "
        f"in {time.perf_counter() - start:.0f} s"
    )
    await bench_engine.analyze(engine, ("memberships", "strategies", "customers"))


# --- 2. the two servers ----------------------------------------------------------------------


def bench_settings(url: str) -> Settings:
    """Tierwise's settings as deployed, but: scheduled evaluations off, no GraphiQL, the
    benchmark's JWT secret, no practical rate limit."""
    return Settings(
        database_url=url,
        evaluation_interval=0,
        graphiql=False,
        jwt_secret=SecretStr(SECRET),
        rate_limit_per_minute=1e9,
        rate_limit_burst=1_000_000,
    )


def authorization(tenant: str) -> str:
    token = issue_token(SECRET, tenant, Role.viewer, "bench", lifetime=dt.timedelta(days=1))
    return f"Bearer {token}"


def tierwise_app(url: str, tenant: str) -> Starlette:
    """The service as ``tierwise serve`` builds it."""
    engine = create_engine(async_url(url))
    return create_app(engine, settings=bench_settings(url))


def ceiling_app(url: str, tenant: str) -> Starlette:
    """The practical ceiling: the same SQL with asyncpg, JSON out, nothing else (no
    authentication, no row-level security: it names the tenant itself)."""
    pools: list[asyncpg.Pool] = []

    async def customer(request: Request) -> JSONResponse:
        if request.method == "GET":
            external_id = request.query_params["id"]
        else:
            external_id = (await request.json())["id"]
        async with pools[0].acquire() as connection:
            row = await connection.fetchrow(
                CARD_SQL.sql, *_arguments(CARD_SQL, tenant, external_id)
            )
        if row is None:
            return JSONResponse({"data": {"customer": None}})
        # Rows of (scheme, tier, ...) and of (id, scheme, tier, name, description, channel,
        # ...): a strategy of the same name and channel in two tiers is recommended once, at
        # its first priority (as `service.engine.strategies.first_of_each` does).
        seen: set[tuple[str, str]] = set()
        names = []
        for strategy in row["strategy_rows"] or ():
            if (strategy[3], strategy[5]) not in seen:
                seen.add((strategy[3], strategy[5]))
                names.append({"name": strategy[3]})
        found = {
            "tiers": [{"scheme": t[0], "tier": t[1]} for t in row["tier_rows"] or ()],
            "strategies": names,
        }
        return JSONResponse({"data": {"customer": found}})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pools.append(await asyncpg.create_pool(url, min_size=POOL, max_size=POOL))
        try:
            yield
        finally:
            await pools[0].close()

    return Starlette(
        routes=[Route("/customer", customer, methods=["GET", "POST"])], lifespan=lifespan
    )


# What `--serve` passes to the app factory of each uvicorn worker (spawned processes, which
# import this module again): the kind of server, the database and the tenant.
_SERVED = "TIERWISE_BENCH_SERVED"


def served_app() -> Starlette:
    """The app factory of a served target's workers (uvicorn, ``factory=True``)."""
    kind, url, tenant = json.loads(os.environ[_SERVED])
    return tierwise_app(url, tenant) if kind == "tierwise" else ceiling_app(url, tenant)


def serve(kind: str, url: str, tenant: str, port: int, workers: int) -> None:
    """A target served as `tierwise serve --workers N` serves: uvicorn's own worker processes
    (spawned, each building its app from the factory), one socket bound by the parent."""
    os.environ[_SERVED] = json.dumps([kind, url, tenant])
    uvicorn.run(
        f"{Path(__file__).stem}:served_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        # A spawned worker answers uvicorn's health check only once it has imported this
        # script (its __main__) again: seconds on a loaded machine, past the default 5.
        timeout_worker_healthcheck=60,
    )


@dataclass
class Target:
    name: str
    port: int
    path: str
    authorization: str | None = None
    process: subprocess.Popen[bytes] | None = None
    # `--baseline`: Tierwise from another checkout (its own benchmarks/bench_api.py serves
    # it), run by ``python`` (a virtualenv with that checkout installed).
    checkout: Path | None = None
    python: str = sys.executable
    workers: int = 1

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        return headers

    def body(self, external_id: str) -> bytes:
        if self.path == "/graphql":
            request = {"query": CUSTOMER_QUERY, "variables": {"id": external_id}}
        else:
            request = {"id": external_id}
        return json.dumps(request, separators=(",", ":")).encode()

    def request(self, external_id: str) -> bytes:
        body = self.body(external_id)
        head = f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        for name, value in self.headers.items():
            head += f"{name}: {value}\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def start(target: Target, url: str, tenant: str) -> None:
    script = Path(__file__)
    if target.checkout is not None:
        script = target.checkout / "benchmarks" / "bench_api.py"
    kind = "ceiling" if target.name == "ceiling" else "tierwise"
    command = [target.python, str(script), "--database-url", url, "--tenant", tenant]
    command += ["--serve", kind, "--port", str(target.port)]
    # Always said (the flag's default is this machine's recommendation, not 1); a baseline
    # checkout older than the flag serves one worker and is told nothing when that is asked.
    if target.workers != 1 or "--workers" in script.read_text():
        command += ["--workers", str(target.workers)]
    target.process = subprocess.Popen(command)


async def wait_ready(target: Target, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                response = await client.post(
                    f"http://127.0.0.1:{target.port}{target.path}",
                    content=target.body("nobody"),
                    headers=target.headers,
                )
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{target.name} did not start on port {target.port}")
            await asyncio.sleep(0.3)


def stop(target: Target) -> None:
    if target.process is not None:
        target.process.terminate()
        try:
            target.process.wait(10)
        except subprocess.TimeoutExpired:
            target.process.kill()


# --- 2. the load generator -------------------------------------------------------------------


async def expected_answers(url: str, tenant: str, sample: int, seed: int) -> dict[str, Any]:
    """``sample`` random existing customers: external id -> the expected ``customer`` value,
    read with plain SQL, set-based (tiers by scheme; active strategies of their tiers by
    priority, id, each name and channel once)."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"SELECT setseed({(seed % 1000) / 1000})")
        rows = await connection.fetch(
            """
            WITH picked AS (
              SELECT id, external_id FROM customers WHERE tenant_id = $1
              ORDER BY random() LIMIT $2
            ), tiers AS (
              SELECT m.customer_id,
                     json_agg(json_build_object('scheme', m.scheme_key, 'tier', m.tier)
                              ORDER BY m.scheme_key) AS tiers
              FROM memberships m JOIN picked p ON p.id = m.customer_id
              WHERE m.tenant_id = $1 GROUP BY m.customer_id
            ), recommended AS (
              SELECT customer_id,
                     json_agg(json_build_object('name', name) ORDER BY priority, id)
                       AS strategies
              FROM (
                SELECT DISTINCT ON (m.customer_id, s.name, s.channel)
                       m.customer_id, s.name, s.priority, s.id
                FROM memberships m JOIN picked p ON p.id = m.customer_id
                JOIN strategies s ON s.tenant_id = m.tenant_id AND s.scheme_key = m.scheme_key
                  AND s.tier = m.tier AND s.active
                WHERE m.tenant_id = $1
                ORDER BY m.customer_id, s.name, s.channel, s.priority, s.id
              ) first_of_each GROUP BY customer_id
            )
            SELECT p.external_id, coalesce(t.tiers, '[]') AS tiers,
                   coalesce(r.strategies, '[]') AS strategies
            FROM picked p LEFT JOIN tiers t ON t.customer_id = p.id
            LEFT JOIN recommended r ON r.customer_id = p.id
            """,
            tenant,
            sample,
        )
    finally:
        await connection.close()
    return {
        row["external_id"]: {
            "tiers": json.loads(row["tiers"]),
            "strategies": json.loads(row["strategies"]),
        }
        for row in rows
    }


@dataclass
class Result:
    target: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    # Over the measured seconds: the server process' CPU seconds, the CPU seconds of the
    # Postgres backends of the benchmark's database, and the sessions Postgres opened for it.
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0
    sessions: int = 0
    load: float = 0.0  # the machine's 1-minute load average at the end of the run

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def per_request_ms(self, seconds: float) -> float:
        return seconds * 1000 / max(1, len(self.latencies))

    @property
    def sessions_per_1000(self) -> float:
        return self.sessions * 1000 / max(1, len(self.latencies))

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return bench_engine.percentile(self.latencies, q) * 1000


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) a process has used, from /proc (Linux); 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds a process and its descendants (a server's uvicorn workers) have used."""
    total = process_cpu(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as found:
            children = [int(child) for child in found.read().split()]
    except OSError:
        return total
    return total + sum(tree_cpu(child) for child in children)


def serving_processes(pid: int) -> int:
    """How many processes serve for the server ``pid``: its uvicorn workers, or itself."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as found:
            children = found.read().split()
    except OSError:
        return 1
    spawned = 0
    for child in children:
        with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as cmdline:
            spawned += b"spawn_main" in cmdline.read()
    return spawned or 1


@dataclass
class Usage:
    """A sample of what a server and the database have used so far."""

    server: float
    backends: dict[int, float]
    sessions: int

    @classmethod
    async def now(cls, monitor: asyncpg.Connection, database: str, server: int) -> Usage:
        rows = await monitor.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        sessions = await monitor.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", database
        )
        backends = {row["pid"]: process_cpu(row["pid"]) for row in rows}
        return cls(tree_cpu(server), backends, int(sessions or 0))

    def since(self, start: Usage, result: Result) -> None:
        """Record the use from ``start`` to this sample in ``result`` (a backend that started
        meanwhile counts whole; one that ended meanwhile is missed)."""
        result.server_cpu = self.server - start.server
        result.postgres_cpu = sum(
            cpu - start.backends.get(pid, 0.0) for pid, cpu in self.backends.items()
        )
        result.sessions = self.sessions - start.sessions


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length < 0:
        raise ValueError("response without Content-Length")
    return status, await reader.readexactly(length)


async def client(
    target: Target,
    requests: Sequence[tuple[bytes, bytes, Any]],
    measure_from: float,
    until: float,
    result: Result,
    rng: random.Random,
) -> None:
    """One keep-alive connection sending requests back to back until ``until``; latencies of
    requests started after ``measure_from`` are recorded, and every response is checked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    clock = time.perf_counter
    try:
        while True:
            began = clock()
            if began >= until:
                return
            request, expected_bytes, expected = requests[rng.randrange(len(requests))]
            try:
                writer.write(request)
                status, body = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                result.errors += 1
                result.first_error = result.first_error or f"{type(error).__name__}: {error}"
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
                continue
            ended = clock()
            if status != 200 or (
                body != expected_bytes and json.loads(body) != {"data": {"customer": expected}}
            ):
                result.errors += 1
                result.first_error = result.first_error or f"{status}: {body[:300]!r}"
            elif began >= measure_from:
                result.latencies.append(ended - began)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def load(
    target: Target,
    requests: Sequence[tuple[bytes, bytes, Any]],
    clients: int,
    warmup: float,
    duration: float,
    seed: int,
    monitor: asyncpg.Connection,
    database: str,
) -> Result:
    result = Result(target.name, clients, duration)
    measure_from = time.perf_counter() + warmup
    until = measure_from + duration
    assert target.process is not None
    server = target.process.pid

    async def sample() -> None:
        await asyncio.sleep(measure_from - time.perf_counter())
        start = await Usage.now(monitor, database, server)
        await asyncio.sleep(until - time.perf_counter())
        await asyncio.sleep(1.0)  # Postgres reports a backend's statistics within a second
        (await Usage.now(monitor, database, server)).since(start, result)

    await asyncio.gather(
        sample(),
        *(
            client(target, requests, measure_from, until, result, random.Random(seed * 1000 + i))
            for i in range(clients)
        ),
    )
    return result


def prepared(target: Target, answers: dict[str, Any]) -> list[tuple[bytes, bytes, Any]]:
    """Per customer: the request's bytes, the expected body (compact JSON, as both servers
    write it; anything else is parsed and compared), the expected ``customer`` value."""
    return [
        (
            target.request(external_id),
            json.dumps(
                {"data": {"customer": expected}}, separators=(",", ":"), ensure_ascii=False
            ).encode(),
            expected,
        )
        for external_id, expected in answers.items()
    ]


async def throughput(args: argparse.Namespace) -> list[Result]:
    targets = [
        Target("tierwise", args.port, "/graphql", authorization(args.tenant), workers=args.workers),
        Target("ceiling", args.port + 1, "/customer", workers=args.workers),
    ]
    if args.baseline is not None:
        targets.append(
            Target(
                "baseline",
                args.port + 2,
                "/graphql",
                authorization(args.tenant),
                checkout=args.baseline,
                python=args.baseline_python or sys.executable,
                workers=args.workers,
            )
        )
    print(f"{args.workers} uvicorn worker(s) per server")
    answers = await expected_answers(args.database_url, args.tenant, args.sample, args.seed)
    print(f"{len(answers):,} random customers to request, answers read from the database")
    requests = {target.name: prepared(target, answers) for target in targets}
    results: list[Result] = []
    monitor = await asyncpg.connect(args.database_url)
    database = make_url(args.database_url).database or ""
    try:
        for target in targets:
            start(target, args.database_url, args.tenant)
        for target in targets:
            await wait_ready(target)
        for target in targets:
            assert target.process is not None
            print(f"{target.name}: {serving_processes(target.process.pid)} serving process(es)")
        for clients in args.clients:
            for index in range(args.repeat):
                # Each target goes first in turn.
                shift = index % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    result = await load(
                        target,
                        requests[target.name],
                        clients,
                        args.warmup,
                        args.duration,
                        args.seed + index,
                        monitor,
                        database,
                    )
                    result.load = os.getloadavg()[0]
                    results.append(result)
                    print(
                        f"  {target.name:8} {clients:3} clients: {result.rps:7.0f} rps, "
                        f"p50 {result.percentile_ms(0.5):6.1f} ms, "
                        f"p99 {result.percentile_ms(0.99):6.1f} ms, "
                        f"CPU/req server {result.per_request_ms(result.server_cpu):.2f} ms "
                        f"Postgres {result.per_request_ms(result.postgres_cpu):.2f} ms, "
                        f"new connections/1,000 {result.sessions_per_1000:.1f}, "
                        f"load {result.load:.1f}, errors {result.errors}"
                        + (f" (first: {result.first_error})" if result.errors else ""),
                        flush=True,
                    )
    finally:
        for target in targets:
            stop(target)
        await monitor.close()
    return results


def commit_of(folder: Path) -> str:
    """The checkout's commit (short), marked ``+changes`` when its files differ from it."""

    def git(*arguments: str) -> str:
        found = subprocess.run(
            ["git", "-C", str(folder), *arguments], capture_output=True, text=True, check=False
        )
        return found.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" +changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def report(results: list[Result], clients: Sequence[int], baseline: Path | None) -> None:
    def median(name: str, level: int, value: str) -> float:
        found = [r for r in results if r.target == name and r.clients == level]
        if value == "rps":
            return statistics.median(r.rps for r in found)
        if value == "server":
            return statistics.median(r.per_request_ms(r.server_cpu) for r in found)
        if value == "postgres":
            return statistics.median(r.per_request_ms(r.postgres_cpu) for r in found)
        if value == "sessions":
            return statistics.median(r.sessions_per_1000 for r in found)
        return statistics.median(r.percentile_ms(0.5 if value == "p50" else 0.99) for r in found)

    names = ["tierwise", "ceiling"] + (["baseline"] if baseline is not None else [])
    repeats = len([r for r in results if r.target == "tierwise" and r.clients == clients[0]])
    loads = [r.load for r in results]
    print(
        f"\nTierwise at {commit_of(Path(__file__).resolve().parent.parent)}"
        + (f", baseline at {commit_of(baseline)}" if baseline is not None else "")
        + f"; medians of {repeats} runs per cell; load average {min(loads):.1f} to "
        f"{max(loads):.1f} (median {statistics.median(loads):.1f})"
    )
    print(
        "| clients | server | rps | p50 ms | p99 ms | server CPU ms/request | "
        "Postgres CPU ms/request | new connections per 1,000 requests | / ceiling |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for level in clients:
        ceiling = median("ceiling", level, "rps")
        for name in names:
            ours = median(name, level, "rps")
            ratio = f"**{ours / ceiling:.2f}**" if name != "ceiling" else ""
            print(
                f"| {level} | {name} | {ours:,.0f} | {median(name, level, 'p50'):.1f} | "
                f"{median(name, level, 'p99'):.1f} | {median(name, level, 'server'):.2f} | "
                f"{median(name, level, 'postgres'):.2f} | "
                f"{median(name, level, 'sessions'):.1f} | {ratio} |"
            )
    if baseline is not None:
        gains = (
            f"{level} clients {median('tierwise', level, 'rps') / median('baseline', level, 'rps'):.2f}"  # noqa: E501
            for level in clients
        )
        print("Tierwise / baseline, rps: " + ", ".join(gains))
    errors = sum(r.errors for r in results)
    print(f"errors: {errors} in {sum(len(r.latencies) for r in results):,} measured requests")
    if errors:
        raise SystemExit("some responses were wrong")


# --- 3. round trips --------------------------------------------------------------------------


@dataclass
class Trips:
    statements: int = 0  # SQL statements (SQLAlchemy before_cursor_execute)
    checkouts: int = 0  # connections taken from the pool
    other: int = 0  # what else went to the server: BEGIN, COMMIT, ROLLBACK (asyncpg's log)
    seconds: float = 0.0

    @property
    def round_trips(self) -> int:
        return self.statements + self.other

    def __str__(self) -> str:
        return (
            f"{self.statements} statements, {self.checkouts} checkouts, "
            f"{self.round_trips} round trips"
        )


# What asyncpg runs the first time a connection meets a type (the card's arrays of rows): its
# type introspection, with `jit` turned off around it; once per pooled connection, not counted.
ASYNCPG_OWN = (
    "WITH RECURSIVE typeinfo_tree",
    "\n                    SELECT\n                        current_setting('jit')",
    "\n                SELECT\n                    set_config('jit'",
)


class Counter:
    """Counts what one engine sends to the server while ``trips`` is set."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.trips: Trips | None = None
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        event.listen(engine.sync_engine.pool, "checkout", self._checkout)
        event.listen(engine.sync_engine.pool, "connect", self._connect)

    def _statement(self, *_: object) -> None:
        if self.trips is not None:
            self.trips.statements += 1

    def _checkout(self, *_: object) -> None:
        if self.trips is not None:
            self.trips.checkouts += 1

    def _connect(self, dbapi_connection: Any, _: object) -> None:
        # asyncpg logs the queries it runs itself (ping, BEGIN, ROLLBACK) and those the
        # service runs through it directly (`Compiled`), not the prepared statements
        # SQLAlchemy executes: those are the statements counted above.
        dbapi_connection._connection.add_query_logger(self._logged)

    def _logged(self, record: Any) -> None:
        if self.trips is None or record.query.startswith(ASYNCPG_OWN):
            return
        if record.query.strip().rstrip(";").upper() in {"BEGIN", "COMMIT", "ROLLBACK", ""}:
            self.trips.other += 1
        else:
            self.trips.statements += 1


async def counted(
    counter: Counter, client: httpx.AsyncClient, query: str, variables: dict[str, Any]
) -> tuple[Trips, dict[str, Any]]:
    """What one GraphQL request sent to the database, and its data."""
    counter.trips = trips = Trips()
    start = time.perf_counter()
    try:
        response = await client.post("/graphql", json={"query": query, "variables": variables})
    finally:
        trips.seconds = time.perf_counter() - start
        counter.trips = None
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return trips, body["data"]


def with_strategies(operation: str) -> str:
    """The segment-members operation with ``strategies { name }`` added to each node."""
    marker = "        tiers {"
    assert marker in operation
    return operation.replace(marker, "        strategies {\n          name\n        }\n" + marker)


async def round_trips(url: str, tenant: str, sizes: Sequence[int], repeat: int = 10) -> None:
    engine = create_engine(async_url(url))
    counter = Counter(engine)
    app = create_app(engine, settings=bench_settings(url))
    members = (OPERATIONS / "segment_members.graphql").read_text()
    try:
        async with engine.connect() as connection:
            tier = await connection.scalar(
                text(
                    "SELECT tier FROM memberships WHERE tenant_id = :t AND scheme_key = 'value' "
                    "GROUP BY tier ORDER BY count(*) DESC LIMIT 1"
                ),
                {"t": tenant},
            )
            some = await connection.scalar(
                text("SELECT external_id FROM customers WHERE tenant_id = :t LIMIT 1"),
                {"t": tenant},
            )
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": authorization(tenant)}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tierwise", headers=headers
        ) as client:
            print(f"\nper request, in process (segment: value / {tier}; median of {repeat}):")
            print("| request | " + " | ".join(f"first: {size}" for size in sizes) + " |")
            print("|---|" + "---|" * len(sizes))
            for label, query in (
                ("segment_members.graphql (tiers, metrics)", members),
                ("the same + strategies { name }", with_strategies(members)),
            ):
                cells = []
                for size in sizes:
                    variables = {"scheme": "value", "tier": tier, "first": size}
                    await counted(counter, client, query, variables)  # warm
                    measured = []
                    for _ in range(repeat):
                        trips, found = await counted(counter, client, query, variables)
                        assert len(found["customers"]["edges"]) == size, found
                        measured.append(trips)
                    seconds = statistics.median(t.seconds for t in measured)
                    cells.append(f"{measured[-1]}, {seconds * 1000:.0f} ms")
                print(f"| {label} | " + " | ".join(cells) + " |")
            trips, found = await counted(counter, client, CUSTOMER_QUERY, {"id": some})
            assert found["customer"] is not None
            print(
                f"customer(id){{ tiers strategies }}: {trips} (one checkout: BEGIN with the "
                "tenant's settings in one query, the statements, COMMIT; with "
                "TIERWISE_DATABASE_PRE_PING also ';'); the ceiling: 1 statement, 1 pool "
                "acquire, 2 round trips (asyncpg resets a connection on release)"
            )
    finally:
        await engine.dispose()


# --- main ------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    await ensure_database(args.database_url)
    engine = create_engine(async_url(args.database_url))
    try:
        if args.reuse and await evaluated(engine, args.tenant):
            await migrate.upgrade(engine)  # to the revision of the code measured
        else:
            await build(engine, args.tenant, args.customers, args.data, args.chunk_rows)
        async with engine.connect() as connection:
            count = await connection.scalar(
                text("SELECT count(*) FROM customers WHERE tenant_id = :t"), {"t": args.tenant}
            )
        print(f"tenant {args.tenant}: {count:,} customers, evaluated")
    finally:
        await engine.dispose()
    if args.build_only:
        return
    if "throughput" in args.only:
        results = await throughput(args)
        report(results, args.clients, args.baseline)
    if "round-trips" in args.only:
        await round_trips(args.database_url, args.tenant, args.sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", required=True, help="postgresql://.../tw_api_bench")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=1_000_000,
        help="rows imported per transaction while building (docs/benchmarks.md)",
    )
    parser.add_argument("--tenant", default=TENANT)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "tierwise-api-bench",
        help="where the demo CSVs are generated, or found from an earlier run",
    )
    parser.add_argument("--reuse", action="store_true", help="skip the build if data is there")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--only", default="throughput,round-trips")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not measured")
    parser.add_argument("--repeat", type=int, default=3, help="runs per target and level")
    parser.add_argument("--sample", type=int, default=20_000, help="customers to draw from")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also serve Tierwise from this checkout (e.g. a worktree of main), side by side",
    )
    parser.add_argument(
        "--baseline-python", help="the Python that has --baseline installed (default: this one)"
    )
    parser.add_argument(
        "--port", type=int, default=8711, help="Tierwise; the ceiling: +1, the baseline: +2"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=recommended_workers(),
        help="uvicorn worker processes of every server (default: the README's recommendation, "
        "one per core: %(default)s here)",
    )
    parser.add_argument("--serve", choices=("tierwise", "ceiling"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.database_url = plain_url(async_url(args.database_url))
    if args.serve:
        serve(args.serve, args.database_url, args.tenant, args.port, args.workers)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
