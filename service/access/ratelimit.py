"""Rate limits per caller: a token bucket each, in process. The same buckets count failed
authentications per client address (`service.access.auth.Authenticator`).

Each caller (an API key, or a JWT's tenant and subject) has a bucket of ``burst`` requests that
refills at ``per_minute``/60 a second; a request takes one, and with none left it is refused
with the seconds until one is back. The buckets live in each replica's memory: N replicas
behind a load balancer allow N times the rate in total, which suits the purpose (one client
cannot starve the others of a replica), not billing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimited(Exception):
    def __init__(self, retry_after: float, what: str = "rate limit exceeded") -> None:
        super().__init__(f"{what}: retry in {math.ceil(retry_after)} s")
        self.retry_after = retry_after

    @property
    def retry_after_seconds(self) -> int:
        """For a Retry-After header: whole seconds, at least 1."""
        return max(1, math.ceil(self.retry_after))


class RateLimiter:
    # Buckets idle long enough to be full again are forgotten past this many callers.
    MAX_BUCKETS = 100_000

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        what: str = "rate limit exceeded",
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self.clock = clock
        self.what = what
        """How a refusal starts (its message ends with the wait)."""
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, caller: str) -> None:
        """Count one request of ``caller``; `RateLimited` when it has none left."""
        if not self.enabled:
            return
        bucket = self._bucket(caller)
        if bucket.tokens < 1.0:
            raise self._refusal(bucket)
        bucket.tokens -= 1.0

    def check(self, caller: str) -> None:
        """`RateLimited` when ``caller`` has none left, counting nothing."""
        if not self.enabled:
            return
        bucket = self._bucket(caller)
        if bucket.tokens < 1.0:
            raise self._refusal(bucket)

    def _bucket(self, caller: str) -> _Bucket:
        """``caller``'s bucket, refilled to now."""
        now = self.clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def _refusal(self, bucket: _Bucket) -> RateLimited:
        return RateLimited((1.0 - bucket.tokens) / self.rate, self.what)

    def _forget_full(self, now: float) -> None:
        refill = self.burst / self.rate
        self._buckets = {
            caller: bucket
            for caller, bucket in self._buckets.items()
            if now - bucket.updated < refill
        }
