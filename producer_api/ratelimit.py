"""Per-key rate limits on requests and on events, with a burst allowance (invariant 6).

Each API key has two budgets: `rate_requests_per_second` requests and
`rate_events_per_second` events, each measured over a sliding window of
`rate_burst_seconds`. A key may spend a whole window's budget at once (the burst
allowance: `rate * burst_seconds`), and on average no more than `rate` per second.
Past it, the caller gets `RateLimited`, which every API family's error middleware
answers as 429 with `Retry-After`.

The counting is the `limits` library's sliding-window counter over its in-memory
storage: O(1) memory per active key, expired keys dropped by the storage itself.
The limits are per process: N API processes behind a balancer admit up to N times
the rate (the in-flight bound, not this, is what keeps each process's memory flat).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from ingest.publish import Overloaded
from runtime.settings import Settings


class RateLimited(Exception):
    """The key spent its budget; it may retry after `retry_after` seconds."""

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"rate limit for {what} exceeded; retry after {retry_after}s")
        self.retry_after = retry_after


def budget(what: str, per_second: float, burst_seconds: int) -> RateLimitItem | None:
    """The sliding-window budget for `per_second` over `burst_seconds`; None when disabled."""
    if per_second <= 0:
        return None
    window = max(1, burst_seconds)
    return RateLimitItemPerSecond(max(1, round(per_second * window)), window, namespace=what)


class KeyRateLimiter:
    """Admits or refuses a key's requests and events against its two budgets."""

    def __init__(
        self, requests: RateLimitItem | None, events: RateLimitItem | None,
        lookups: RateLimitItem | None = None,
    ) -> None:  # fmt: skip
        self._strategy = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._requests = requests
        self._events = events
        self._lookups = lookups

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRateLimiter:
        burst = settings.rate_burst_seconds
        return cls(
            budget("requests", settings.rate_requests_per_second, burst),
            budget("events", settings.rate_events_per_second, burst),
            budget("key lookups", settings.rate_key_lookups_per_second, burst),
        )

    async def admit_lookup(self, client: str) -> None:
        """Count one database lookup of a key not yet cached, for client address `client`
        (before anyone is authenticated: the one budget an unknown caller spends)."""
        await self._admit(self._lookups, f"address:{client}", 1)

    async def admit_request(self, key_prefix: str) -> None:
        """Count one request of `key_prefix`; raise `RateLimited` when over budget."""
        await self._admit(self._requests, key_prefix, 1)

    async def admit_events(self, key: str, count: int) -> None:
        """Count `count` events of `key` (a key prefix, or `tenant:<id>` when no key is
        known); raise `RateLimited` when over budget.

        A single request larger than the whole window is admitted when the key is
        idle and then uses up the window, rather than being refused forever.
        """
        await self._admit(self._events, key, count)

    async def _admit(self, item: RateLimitItem | None, key: str, cost: int) -> None:
        if item is None or cost <= 0:
            return
        if await self._strategy.hit(item, key, cost=min(cost, item.amount)):
            return
        stats = await self._strategy.get_window_stats(item, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(item.namespace, retry_after)


class BodyBudget:
    """Bytes of request bodies one API process holds at once: received, parsed or waiting
    for Kafka (invariant 6). `max_inflight_bytes` alone counts only what was already read
    and sent; without this, N concurrent slow uploads hold N bodies whatever the rate.

    A request reserves its `Content-Length` (or the whole body limit when the length is
    unknown or the body is compressed) before its handler reads anything; past the
    budget it is answered 503 with `Retry-After` at once. One key (by the prefix it
    presents: checked by the handler, which refuses a forged one before reading a byte)
    holds at most `per_key` of it, so one key's slow requests cannot take every other
    tenant's share (43 of them once did, for 60 s). A request is always admitted when
    nothing else is held (by its key, for the share), so a single large body can never be
    refused forever.
    """

    def __init__(self, limit: int, max_body_bytes: int, per_key: int | None = None) -> None:
        self._limit = limit
        self._max_body = max_body_bytes
        self._per_key = per_key if per_key is not None else limit
        self.held = 0
        self.held_by: Counter[str] = Counter()

    def need(self, request: web.BaseRequest) -> int:
        """What `request` may come to hold in memory, as far as its headers tell."""
        if not request.body_exists:
            return 0
        length = request.content_length
        if length is None or request.headers.get("Content-Encoding", "identity") != "identity":
            return self._max_body
        return length

    @asynccontextmanager
    async def hold(self, request: web.BaseRequest, who: str = "") -> AsyncIterator[None]:
        """Reserve `request`'s bytes for the block, on behalf of key prefix `who`; raise
        `Overloaded` when over the process's budget or the key's share of it."""
        need = self.need(request)
        mine = self.held_by[who]
        if need and mine and mine + need > self._per_key:
            raise Overloaded(f"this key already holds {mine} bytes of request bodies")
        if need and self.held and self.held + need > self._limit:
            raise Overloaded(f"{self.held} bytes of request bodies already held")
        self.held += need
        self.held_by[who] += need
        try:
            yield
        finally:
            self.held -= need
            self.held_by[who] -= need
            if self.held_by[who] <= 0:
                del self.held_by[who]
