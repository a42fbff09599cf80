"""The long-running tasks of a serving process (scheduled evaluations, the webhook dispatcher)
and how they stop: asked first, cancelled only past the shutdown timeout.

A task is a coroutine function given the ``stopping`` event: it should finish the piece of
work it is in (a run, a delivery), then return once the event is set. Past the deadline it is
cancelled; its open transaction then rolls back (an evaluation run left marked running is
marked abandoned by the scheme's next run), so nothing half-done is ever committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Work = Callable[[asyncio.Event], Awaitable[None]]


class Background:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadline: float | None = None

    def start(self, name: str, work: Work) -> None:
        """Run ``work(stopping)`` as a task of its own until it returns or is stopped."""
        self._loop = asyncio.get_running_loop()

        async def run() -> None:
            await work(self.stopping)

        self._tasks.append(asyncio.create_task(run(), name=name))

    def request_stop(self) -> None:
        """Ask every task to stop, and start the shutdown clock. Safe to call from a signal
        handler (the server calls it the moment SIGTERM arrives, before it drains requests),
        and more than once."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.stopping.set)

    async def stop(self) -> None:
        """Stop every task: wait until the deadline (``timeout`` after the first request to
        stop), then cancel what is still running and wait for it to unwind."""
        self.request_stop()
        self.stopping.set()
        assert self._deadline is not None
        if not self._tasks:
            return
        remaining = max(self._deadline - time.monotonic(), 0.0)
        _, pending = await asyncio.wait(self._tasks, timeout=remaining)
        for task in pending:
            log.warning(
                "background task %s still running after the %.0f s shutdown timeout: "
                "cancelled, its transaction rolls back",
                task.get_name(),
                self.timeout,
            )
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for task, result in zip(self._tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("background task %s failed", task.get_name(), exc_info=result)
        self._tasks.clear()
