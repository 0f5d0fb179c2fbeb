"""Per-key budgets: over budget → RateLimited (429 + Retry-After in the family's format)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ingest.publish import Overloaded
from producer_api.errors import error_middleware_for
from producer_api.ratelimit import BodyBudget, KeyRateLimiter, RateLimited, budget
from runtime.settings import Settings


def limiter(requests: float = 0, events: float = 0, burst: int = 60) -> KeyRateLimiter:
    return KeyRateLimiter(budget("requests", requests, burst), budget("events", events, burst))


async def test_a_key_over_its_request_budget_is_refused_while_another_is_not() -> None:
    limits = limiter(requests=0.05, burst=60)  # 3 requests per 60 s window
    for _ in range(3):
        await limits.admit_request("key-a")
    with pytest.raises(RateLimited) as refused:
        await limits.admit_request("key-a")
    assert 1 <= refused.value.retry_after <= 120
    await limits.admit_request("key-b")


async def test_events_are_counted_by_the_calling_key() -> None:
    limits = limiter(events=0.5, burst=60)  # 30 events per window
    await limits.admit_events("prefix-a", 20)
    with pytest.raises(RateLimited, match="events"):
        await limits.admit_events("prefix-a", 20)
    await limits.admit_events("prefix-a", 10)
    await limits.admit_events("prefix-b", 30)


async def test_a_request_larger_than_the_window_passes_once_then_uses_it_up() -> None:
    limits = limiter(events=0.5, burst=60)
    await limits.admit_events("tenant:idle", 500)
    with pytest.raises(RateLimited):
        await limits.admit_events("tenant:idle", 1)


async def test_a_zero_rate_disables_the_budget() -> None:
    limits = limiter()
    for _ in range(1000):
        await limits.admit_request("key")
    await limits.admit_events("tenant:t", 10**9)


def test_budgets_come_from_settings() -> None:
    settings = Settings(rate_requests_per_second=10, rate_events_per_second=0, rate_burst_seconds=3)
    item = budget("requests", settings.rate_requests_per_second, settings.rate_burst_seconds)
    assert item is not None and (item.amount, item.get_expiry()) == (30, 3)
    assert KeyRateLimiter.from_settings(settings)._events is None


async def test_every_family_formatter_answers_429_with_retry_after() -> None:
    def family_format(
        status: int, code: str, message: str, headers: dict[str, str] | None
    ) -> web.Response:
        return web.json_response({"family_error": code}, status=status, headers=headers)

    async def handler(_request: web.Request) -> web.StreamResponse:
        raise RateLimited("requests", 7)

    middleware = error_middleware_for(family_format)
    answer = await middleware(make_mocked_request("POST", "/x"), handler)
    assert isinstance(answer, web.Response) and answer.status == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.body is not None and json.loads(bytes(answer.body)) == {
        "family_error": "rate_limited"
    }


async def test_one_key_holds_at_most_its_share_of_the_body_budget() -> None:
    bodies = BodyBudget(limit=1000, per_key=400)
    async with bodies.hold("greedy") as first, bodies.hold("greedy") as second:
        first.take(300)
        with pytest.raises(Overloaded, match="this key already holds 300"):
            second.take(300)
        async with bodies.hold("calm") as calm, bodies.hold("third") as third:
            calm.take(300)
            third.take(300)
            async with bodies.hold("fourth") as fourth:
                with pytest.raises(Overloaded, match="900 bytes"):  # the process's budget
                    fourth.take(300)
            assert bodies.held == 900
            assert bodies.held_by == {"greedy": 300, "calm": 300, "third": 300}
    assert bodies.held == 0 and not bodies.held_by


async def test_a_hold_grows_as_bytes_arrive_and_nothing_is_held_before() -> None:
    bodies = BodyBudget(limit=1000, per_key=1000)
    async with bodies.hold("slow") as slow:
        assert bodies.held == 0  # declared sizes are not charged
        slow.take(10)
        slow.take(20)
        assert bodies.held == 30 and slow.bytes == 30
    assert bodies.held == 0


async def test_a_key_holding_nothing_is_admitted_past_its_share() -> None:
    bodies = BodyBudget(limit=1000, per_key=100)
    async with bodies.hold("big") as big:
        big.take(600)
        assert bodies.held_by["big"] == 600


async def test_all_of_a_tenants_keys_hold_at_most_the_tenants_share() -> None:
    bodies = BodyBudget(limit=10_000, per_key=400, per_tenant=500)
    async with bodies.hold("k1") as one, bodies.hold("k2") as two, bodies.hold("k3") as other:
        one.belongs_to("acme")
        one.take(300)
        two.belongs_to("acme")
        with pytest.raises(Overloaded, match="this tenant already holds 300"):
            two.take(300)
        other.belongs_to("globex")
        other.take(300)
        assert bodies.held_by_tenant == {"acme": 300, "globex": 300}
    assert bodies.held == 0 and not bodies.held_by_tenant


async def test_bytes_read_before_the_key_is_known_count_for_its_tenant() -> None:
    """PostHog's key is in the body: the bytes come first, the tenant after."""
    bodies = BodyBudget(limit=10_000, per_tenant=500)
    async with bodies.hold("k1") as one, bodies.hold("k2") as two:
        one.belongs_to("acme")
        one.take(300)
        two.take(300)
        with pytest.raises(Overloaded, match="this tenant already holds 300"):
            two.belongs_to("acme")


def test_the_share_comes_from_settings() -> None:
    settings = Settings()
    assert settings.max_receiving_bytes_per_key < settings.max_receiving_bytes


async def test_all_of_a_tenants_keys_share_the_tenants_budgets() -> None:
    """Two keys of one tenant, each within its own budget, together pass the tenant's."""
    limits = KeyRateLimiter(
        budget("requests", 10, 1), budget("events", 100, 1),
        tenant_requests=budget("tenant requests", 3, 1),
        tenant_events=budget("tenant events", 150, 1),
    )  # fmt: skip
    await limits.admit_request("key-1", "acme")
    await limits.admit_request("key-1", "acme")
    await limits.admit_request("key-2", "acme")
    with pytest.raises(RateLimited, match="tenant requests"):
        await limits.admit_request("key-2", "acme")
    await limits.admit_request("key-3", "globex")  # another tenant's budget is its own
    await limits.admit_events("key-1", 90, tenant="acme")
    with pytest.raises(RateLimited, match="tenant events"):
        await limits.admit_events("key-2", 90, tenant="acme")
    await limits.admit_events("key-3", 90, tenant="globex")


def test_the_tenant_budgets_are_larger_than_a_keys() -> None:
    settings = Settings()
    assert settings.rate_tenant_events_per_second > settings.rate_events_per_second
    assert settings.rate_tenant_requests_per_second > settings.rate_requests_per_second
