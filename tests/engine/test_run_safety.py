"""Runs are atomic and exclusive, proven with real processes: one killed halfway changes
nothing, and two started together never overlap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from service.engine import evaluation
from tests.support import VALUE, load, order, publish, run_statuses, tiers_of

ROOT = Path(__file__).resolve().parents[2]


def _start(
    database: URL, tenant: str, marker: Path, pause_after: str, seconds: float
) -> subprocess.Popen[bytes]:
    url = database.render_as_string(hide_password=False)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.engine.evaluation_process",
            url,
            tenant,
            str(marker),
            pause_after,
            str(seconds),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _wait_for(marker: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (marker.exists() and text in marker.read_text()):
        assert time.monotonic() < deadline, f"{marker} never said {text!r}"
        time.sleep(0.05)


async def test_a_run_killed_halfway_changes_nothing_and_the_next_completes(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await load(engine, tenant, [order("o1", "c", 200, "10")])
    await publish(engine, tenant, VALUE)
    await evaluation.evaluate(engine, tenant, "value")
    await load(engine, tenant, [order("o2", "c", 1, "6000"), order("o3", "c", 2, "1")])
    async with engine.connect() as connection:
        before = await tiers_of(connection, tenant, "value")
    assert before == {"c": "Normal"}

    marker = tmp_path / "marker"
    # Paused after the new tiers were written (uncommitted) to memberships and transitions.
    process = _start(database, tenant, marker, "_apply", 60)
    _wait_for(marker, "start")
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == before  # readers see the old
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == before
    assert await run_statuses(engine, tenant) == ["succeeded", "running"]

    result = await evaluation.evaluate(engine, tenant, "value")
    assert result is not None and result.changed == 1
    async with engine.connect() as connection:
        assert await tiers_of(connection, tenant, "value") == {"c": "VIP"}
    assert await run_statuses(engine, tenant) == ["succeeded", "abandoned", "succeeded"]


async def test_two_processes_never_run_one_scheme_at_once(
    database: URL, engine: AsyncEngine, tenant: str, tmp_path: Path
) -> None:
    await load(engine, tenant, [order("o1", "c", 5, "10")])
    await publish(engine, tenant, VALUE)
    first, second = tmp_path / "first", tmp_path / "second"
    processes = [_start(database, tenant, marker, "_stage", 1.5) for marker in (first, second)]
    for process in processes:
        assert process.wait(timeout=120) == 0
    spans = []
    for marker in (first, second):
        lines = dict(line.split() for line in marker.read_text().splitlines())
        spans.append((float(lines["start"]), float(lines["end"])))
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start, f"runs overlapped: {spans}"
    assert await run_statuses(engine, tenant) == ["succeeded", "succeeded"]
