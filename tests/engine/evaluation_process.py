"""A separate process running one evaluation, with a pause at a chosen point, for the tests
that kill a run halfway or race two runs (run by tests/engine/test_run_safety.py, not by pytest)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from service.db.database import create_engine
from service.engine import evaluation


def main(url: str, tenant: str, marker: str, pause_after: str, seconds: float) -> None:
    original = getattr(evaluation, pause_after)

    async def paused(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        with Path(marker).open("a") as log:
            log.write(f"start {time.time()}\n")
        await asyncio.sleep(seconds)
        with Path(marker).open("a") as log:
            log.write(f"end {time.time()}\n")
        return result

    setattr(evaluation, pause_after, paused)

    async def run() -> None:
        engine = create_engine(make_url(url))
        await evaluation.evaluate(engine, tenant, "value", trigger="test")
        await engine.dispose()

    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
