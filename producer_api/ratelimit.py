"""Per-key rate limits on requests and on events, with a burst allowance (invariant 6).

Each API key has two budgets: `rate_requests_per_second` requests and
`rate_events_per_second` events, each measured over a sliding window of
`rate_burst_seconds`. A key may spend a whole window's budget at once (the burst
allowance: `rate * burst_seconds`), and on average no more than `rate` per second.
Past it, the caller gets `RateLimited`, which every API family's error middleware
answers as 429 with `Retry-After`. All of a tenant's keys together also share a tenant
budget of each (`rate_tenant_requests_per_second`, `rate_tenant_events_per_second`):
minting a hundred keys no longer multiplies what one tenant may send.

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
        lookups: RateLimitItem | None = None, tenant_requests: RateLimitItem | None = None,
        tenant_events: RateLimitItem | None = None,
    ) -> None:  # fmt: skip
        self._strategy = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._requests = requests
        self._events = events
        self._lookups = lookups
        self._tenant_requests = tenant_requests
        self._tenant_events = tenant_events

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRateLimiter:
        burst = settings.rate_burst_seconds
        return cls(
            budget("requests", settings.rate_requests_per_second, burst),
            budget("events", settings.rate_events_per_second, burst),
            budget("key lookups", settings.rate_key_lookups_per_second, burst),
            budget("tenant requests", settings.rate_tenant_requests_per_second, burst),
            budget("tenant events", settings.rate_tenant_events_per_second, burst),
        )

    async def admit_lookup(self, client: str) -> None:
        """Count one database lookup of a key not yet cached, for client address `client`
        (before anyone is authenticated: the one budget an unknown caller spends)."""
        await self._admit(self._lookups, f"address:{client}", 1)

    async def admit_request(self, key_prefix: str, tenant: str | None = None) -> None:
        """Count one request of `key_prefix` (and of its `tenant`); raise `RateLimited`
        when over either budget."""
        await self._admit(self._requests, key_prefix, 1)
        if tenant is not None:
            await self._admit(self._tenant_requests, f"tenant:{tenant}", 1)

    async def admit_events(self, key: str, count: int, tenant: str | None = None) -> None:
        """Count `count` events of `key` (a key prefix, or `tenant:<id>` when no key is
        known); raise `RateLimited` when over budget.

        A single request larger than the whole window is admitted when the key is
        idle and then uses up the window, rather than being refused forever.
        """
        await self._admit(self._events, key, count)
        if tenant is not None:
            await self._admit(self._tenant_events, f"tenant:{tenant}", count)

    async def _admit(self, item: RateLimitItem | None, key: str, cost: int) -> None:
        if item is None or cost <= 0:
            return
        if await self._strategy.hit(item, key, cost=min(cost, item.amount)):
            return
        stats = await self._strategy.get_window_stats(item, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(item.namespace, retry_after)


BODY_HOLD_NAME = "sluice.body_hold"
"""Where a request keeps its `BodyHold` (set by the error middleware that takes it)."""


class BodyHold:
    """One request's share of the process's body budget: it grows as the request's bytes
    arrive (`take`), so a body declared large but sent slowly holds only what was sent.
    It is charged to the key the request presented, and to the key's tenant once the key
    is verified (`belongs_to`)."""

    def __init__(self, budget: BodyBudget | None, key: str) -> None:
        self._budget = budget
        self.key = key
        self.tenant: str | None = None
        self.bytes = 0

    def take(self, size: int) -> None:
        """Charge `size` more bytes; raise `Overloaded` past the process's budget or the
        key's or the tenant's share of it."""
        if self._budget is not None and size > 0:
            self._budget.charge(self, size)

    def belongs_to(self, tenant: str) -> None:
        """Charge what is held, and everything after, to `tenant` too."""
        if self._budget is not None and self.tenant is None:
            self._budget.assign(self, tenant)


UNBUDGETED = BodyHold(None, "")
"""The hold of a request no budget covers (a sub-app's inner middleware, a test app)."""


class BodyBudget:
    """Bytes of request bodies one API process holds at once: received, decoded, parsed
    or waiting for Kafka (invariant 6). `max_inflight_bytes` alone counts only what was
    already read and sent; without this, N concurrent slow uploads hold N bodies.

    Each request holds what it has received so far (`BodyHold.take`, called as bytes
    arrive and again for a body's decoded size); past the budget it is answered 503 with
    `Retry-After`. One key (by the prefix it presents: the handler refuses a forged one
    before reading a byte) holds at most `per_key`, and all of one tenant's keys at most
    `per_tenant`, so neither one key's slow requests nor a tenant's hundred keys can take
    every other tenant's share (43 slow requests of one key once held it all for 60 s).
    A request is always admitted when nothing else is held (by its key, by its tenant,
    for the shares), so a single large body is never refused forever. The arrival rate
    is `receive`'s (producer_api/content.py): a body slower than the minimum is cut.
    """

    def __init__(
        self, limit: int, per_key: int | None = None, per_tenant: int | None = None
    ) -> None:
        self._limit = limit
        self._per_key = per_key if per_key is not None else limit
        self._per_tenant = per_tenant if per_tenant is not None else limit
        self.held = 0
        self.held_by: Counter[str] = Counter()
        self.held_by_tenant: Counter[str] = Counter()

    def charge(self, hold: BodyHold, size: int) -> None:
        mine = self.held_by[hold.key]
        if mine > hold.bytes and mine + size > self._per_key:
            raise Overloaded(f"this key already holds {mine} bytes of request bodies")
        if hold.tenant is not None:
            ours = self.held_by_tenant[hold.tenant]
            if ours > hold.bytes and ours + size > self._per_tenant:
                raise Overloaded(f"this tenant already holds {ours} bytes of request bodies")
        if self.held > hold.bytes and self.held + size > self._limit:
            raise Overloaded(f"{self.held} bytes of request bodies already held")
        self.held += size
        self.held_by[hold.key] += size
        if hold.tenant is not None:
            self.held_by_tenant[hold.tenant] += size
        hold.bytes += size

    def assign(self, hold: BodyHold, tenant: str) -> None:
        ours = self.held_by_tenant[tenant]
        if ours and hold.bytes and ours + hold.bytes > self._per_tenant:
            raise Overloaded(f"this tenant already holds {ours} bytes of request bodies")
        hold.tenant = tenant
        if hold.bytes:
            self.held_by_tenant[tenant] += hold.bytes

    @asynccontextmanager
    async def hold(self, who: str = "") -> AsyncIterator[BodyHold]:
        """A hold for one request on behalf of key prefix `who`, released when the block
        ends (its answer sent, its events acknowledged by Kafka)."""
        hold = BodyHold(self, who)
        try:
            yield hold
        finally:
            self.held -= hold.bytes
            _drop(self.held_by, hold.key, hold.bytes)
            if hold.tenant is not None:
                _drop(self.held_by_tenant, hold.tenant, hold.bytes)


def _drop(counts: Counter[str], who: str, size: int) -> None:
    counts[who] -= size
    if counts[who] <= 0:
        del counts[who]


def body_hold(request: web.BaseRequest) -> BodyHold:
    """The request's hold on the body budget (`UNBUDGETED` when none was taken)."""
    hold = request.get(BODY_HOLD_NAME)
    return hold if isinstance(hold, BodyHold) else UNBUDGETED
