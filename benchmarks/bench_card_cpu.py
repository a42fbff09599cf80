"""CPU per customer card, in process: Tierwise's ASGI app called directly (no HTTP, no
sockets), for this checkout and others side by side in one run.

    python benchmarks/bench_card_cpu.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/tw_api_bench_i16c \\
        --versus /work/venv/bin/python --cards 1000 --rounds 7 --concurrency 1 16

On a shared machine the throughput of a server over HTTP moves with the load of others; the
CPU time one process spends per request moves much less. Each target is a worker process
(``python`` of a virtualenv with that checkout installed: this one's, and each ``--versus``)
running this file, which imports the ``service`` package of its own virtualenv and builds
the app as ``tierwise serve`` does (``service.app.create_app``, its lifespan run: the
collector frozen after start-up; uvloop as deployed). The parent reads ``--sample`` random
customers' expected cards from the database (``bench_api.expected_answers``) and hands the
workers the same ids. Per round each worker serves ``--cards`` cards of
``bench_api.CUSTOMER_QUERY`` (``customer(id) { tiers { scheme tier } strategies { name } }``,
with the benchmark's viewer JWT) at ``--concurrency`` requests at once, every request in a
task of its own as uvicorn runs it, and reports ``time.process_time()`` per card over the
round; the targets take turns round by round (each goes first in turn), so the machine's
load falls on all alike. Every response is checked after the round's clock stops (status
200, exactly the expected body). Medians over ``--rounds``, after one round of warm-up.

After the rounds, one more round per target and concurrency counts the Python function calls
per card (cProfile; coroutine resumptions count as calls): no time, but a figure the
machine's load does not move, for changes too small to see in the CPU times.

``--profile FILE`` profiles one more round of this checkout's worker with cProfile on CPU
time (read with ``python -m pstats FILE``).

Only APIs every checkout since issue 16 has are used here (``create_app``, ``Settings``,
``create_engine``, ``issue_token``), so the worker runs against older checkouts too.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
QUERY = (
    "query Customer($id: ID!) { customer(id: $id) { tiers { scheme tier } strategies { name } } }"
)
SECRET = "tierwise-api-benchmark-hs256-secret-32-bytes"


# --- the worker: one checkout's app, in this process -----------------------------------------


class Card:
    """One raw ASGI request for a customer card, and what came back."""

    def __init__(self, body: bytes, authorization: bytes) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1:8711"),
                (b"content-type", b"application/json"),
                (b"authorization", authorization),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8711),
            "state": {},
        }
        self.body = body
        self.status = 0
        self.chunks: list[bytes] = []

    async def run(self, app: Any) -> None:
        sent = False
        done = asyncio.get_running_loop().create_future()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await done  # the client stays until the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self.chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and not done.done():
                    done.set_result(None)

        await app(dict(self.scope, headers=list(self.scope["headers"])), receive, send)


def _checkout_of(module_file: str) -> tuple[str, str]:
    """The checkout a module was imported from, and its commit (``+changes`` if dirty)."""
    folder = Path(module_file).resolve().parent.parent

    def git(*arguments: str) -> str:
        found = subprocess.run(
            ["git", "-C", str(folder), *arguments], capture_output=True, text=True, check=False
        )
        return found.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return str(folder), commit + (" +changes" if dirty else "")


async def _serve_rounds(url: str, tenant: str) -> None:
    """Read one command per line on stdin and answer one JSON line on stdout:
    ``{"ids": [...], "expected": {...}, "concurrency": n, "profile": path|null}``."""
    from pydantic import SecretStr

    import service
    from service.access.auth import Role, issue_token
    from service.app import create_app
    from service.config import Settings
    from service.db.database import async_url, create_engine

    settings = Settings(
        database_url=url,
        evaluation_interval=0,
        graphiql=False,
        jwt_secret=SecretStr(SECRET),
        rate_limit_per_minute=1e9,
        rate_limit_burst=1_000_000,
    )
    app = create_app(create_engine(async_url(url)), settings=settings)
    token = issue_token(SECRET, tenant, Role.viewer, "bench", lifetime=dt.timedelta(days=1))
    authorization = f"Bearer {token}".encode()
    folder, commit = _checkout_of(service.__file__)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)  # a command holds a round's answers
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with app.router.lifespan_context(app):
        print(json.dumps({"checkout": folder, "commit": commit}), flush=True)
        while line := await reader.readline():
            command = json.loads(line)
            cards = [
                Card(
                    json.dumps(
                        {"query": QUERY, "variables": {"id": external_id}}, separators=(",", ":")
                    ).encode(),
                    authorization,
                )
                for external_id in command["ids"]
            ]
            profiled = command.get("profile") or command.get("calls")
            profile = cProfile.Profile(time.process_time) if profiled else None
            cpu, wall = await _round(app, cards, command["concurrency"], profile)
            calls = 0
            if profile is not None:
                profile.create_stats()
                calls = sum(stat[1] for stat in profile.stats.values())  # type: ignore[attr-defined]
                if command.get("profile"):
                    profile.dump_stats(command["profile"])
            errors, first = 0, ""
            for external_id, card in zip(command["ids"], cards, strict=True):
                body = b"".join(card.chunks)
                expected = {"data": {"customer": command["expected"][external_id]}}
                if card.status != 200 or json.loads(body) != expected:
                    errors += 1
                    first = first or f"{external_id}: {card.status} {body[:300]!r}"
            answer = {
                "cpu": cpu,
                "wall": wall,
                "calls": calls,
                "errors": errors,
                "first_error": first,
            }
            print(json.dumps(answer), flush=True)


async def _round(
    app: Any, cards: list[Card], concurrency: int, profile: cProfile.Profile | None
) -> tuple[float, float]:
    """Serve ``cards``, ``concurrency`` at a time, each in a task of its own; the process'
    CPU seconds and the wall seconds it took."""
    queue = iter(cards)

    async def client() -> None:
        for card in queue:
            await asyncio.create_task(card.run(app))

    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    if profile is not None:
        profile.disable()
    return time.process_time() - cpu, time.perf_counter() - wall


def worker(url: str, tenant: str) -> None:
    try:
        import uvloop
    except ImportError:  # a checkout from before uvloop was a dependency
        asyncio.run(_serve_rounds(url, tenant))
        return
    uvloop.run(_serve_rounds(url, tenant))


# --- the parent: workers side by side ---------------------------------------------------------


class Target:
    def __init__(self, spec: str, url: str, tenant: str) -> None:
        """``spec``: a Python (its virtualenv's checkout is measured), or PYTHON:CHECKOUT
        (that checkout, first on the path, with that Python's packages)."""
        python, _, checkout = spec.partition(":")
        self.python = python
        environment = dict(os.environ)
        if checkout:
            environment["PYTHONPATH"] = str(Path(checkout).resolve())
        self.process = subprocess.Popen(
            [
                python,
                str(Path(__file__).resolve()),
                "--worker",
                "--database-url",
                url,
                "--tenant",
                tenant,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",  # not a checkout: each worker imports its own virtualenv's `service`
            env=environment,
        )
        hello = self._read()
        self.checkout, self.commit = hello["checkout"], hello["commit"]
        self.name = f"{Path(self.checkout).name} ({self.commit})"
        self.cpu: dict[int, list[float]] = {}
        self.wall: dict[int, list[float]] = {}
        self.calls: dict[int, float] = {}
        self.errors = 0

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the worker of {self.python} ended (see its error above)")
        found: dict[str, Any] = json.loads(line)
        return found

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


def parent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from bench_api import expected_answers  # this checkout's, in the parent only

    answers = asyncio.run(expected_answers(args.database_url, args.tenant, args.sample, 1))
    ids = list(answers)
    print(f"{len(ids):,} customers, their cards read from the database")
    targets = [Target(python, args.database_url, args.tenant) for python in args.pythons]
    try:
        for concurrency in args.concurrency:
            for number in range(args.rounds + 1):  # the first round warms up
                picked = [ids[(number * args.cards + i) % len(ids)] for i in range(args.cards)]
                command = {
                    "ids": picked,
                    "expected": {i: answers[i] for i in picked},
                    "concurrency": concurrency,
                }
                shift = number % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    found = target.run(command)
                    target.errors += found["errors"]
                    if found["errors"]:
                        print(f"  {target.name}: {found['errors']} wrong: {found['first_error']}")
                    if number == 0:
                        continue
                    target.cpu.setdefault(concurrency, []).append(found["cpu"] / args.cards)
                    target.wall.setdefault(concurrency, []).append(found["wall"] / args.cards)
                    print(
                        f"  {concurrency:3} at once, round {number}: {target.name:28} "
                        f"{found['cpu'] * 1000 / args.cards:.3f} ms CPU/card "
                        f"({found['wall'] * 1000 / args.cards:.3f} wall), "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        for concurrency in args.concurrency:
            # Python function calls per card (cProfile's count, coroutine resumptions
            # included): not a time, but free of the machine's noise.
            picked = ids[: args.cards]
            for target in targets:
                found = target.run(
                    {
                        "ids": picked,
                        "expected": {i: answers[i] for i in picked},
                        "concurrency": concurrency,
                        "calls": True,
                    }
                )
                target.calls[concurrency] = found["calls"] / args.cards
        if args.profile:
            picked = ids[: args.cards]
            targets[0].run(
                {
                    "ids": picked,
                    "expected": {i: answers[i] for i in picked},
                    "concurrency": args.concurrency[-1],
                    "profile": str(Path(args.profile).resolve()),
                }
            )
            print(f"profile of {targets[0].name}: {args.profile}")
    finally:
        for target in targets:
            target.close()
    report(targets, args)


def report(targets: Sequence[Target], args: argparse.Namespace) -> None:
    print(
        f"\nCPU ms per card in process (medians of {args.rounds} rounds of {args.cards:,} "
        f"cards; load average now {os.getloadavg()[0]:.1f}):"
    )
    print("| at once | " + " | ".join(t.name for t in targets) + " |")
    print("|---|" + "---|" * len(targets))
    for concurrency in args.concurrency:
        cells = [
            f"{statistics.median(t.cpu[concurrency]) * 1000:.3f} "
            f"(min {min(t.cpu[concurrency]) * 1000:.3f})"
            for t in targets
        ]
        print(f"| {concurrency} | " + " | ".join(cells) + " |")
    print("\nPython function calls per card (cProfile, one round):")
    print("| at once | " + " | ".join(t.name for t in targets) + " |")
    print("|---|" + "---|" * len(targets))
    for concurrency in args.concurrency:
        cells = [f"{t.calls[concurrency]:,.0f}" for t in targets]
        print(f"| {concurrency} | " + " | ".join(cells) + " |")
    errors = sum(t.errors for t in targets)
    checked = args.cards * (args.rounds + 2) * len(args.concurrency) * len(targets)
    print(f"errors: {errors} in {checked:,} cards checked")
    if errors:
        raise SystemExit("some responses were wrong")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", required=True, help="a database bench_api.py built")
    parser.add_argument("--tenant", default="bench")
    parser.add_argument(
        "--versus",
        action="append",
        default=[],
        metavar="PYTHON[:CHECKOUT]",
        help="also measure the checkout installed in this Python's virtualenv, or CHECKOUT "
        "with this Python's packages (repeatable)",
    )
    parser.add_argument("--cards", type=int, default=1000, help="cards per round")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per target")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--sample", type=int, default=5000, help="customers to draw from")
    parser.add_argument("--profile", help="cProfile one more round of this checkout to FILE")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.database_url, args.tenant)
        return
    args.pythons = [sys.executable, *args.versus]
    parent(args)


if __name__ == "__main__":
    main()
