"""The key cache (a revoke or rotation in this process cuts it; bounded; lookups charged
to the client's address), Basic auth, default scopes."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from ingest.keys import DEFAULT_SCOPES, SCOPES, generate_key
from producer_api.auth import (
    _CACHED_KEYS,
    KeyVerifier,
    Principal,
    Unauthenticated,
    presented_key,
)
from producer_api.ratelimit import KeyRateLimiter, RateLimited, budget


class CountingVerifier(KeyVerifier):
    """The cache under test, with the database lookup replaced by a counter (the cache is
    what is tested; tests/integration/test_keys_admin.py drives the real lookup)."""

    def __init__(self, cache_seconds: float, **kwargs: Any) -> None:
        super().__init__(None, "s", cache_seconds, **kwargs)  # type: ignore[arg-type]
        self.lookups = 0

    async def _lookup(self, key: str) -> tuple[Principal, datetime | None]:
        self.lookups += 1
        return Principal("t", key.split(".")[0], frozenset({"events:read"})), None


def _verify(verifier: KeyVerifier, key: str, client: str = "") -> Any:
    return asyncio.run(verifier.verify(key, client))


def test_a_cached_key_is_looked_up_again_at_once_after_a_cut() -> None:
    verifier, key, other = CountingVerifier(600), generate_key(), generate_key()
    _verify(verifier, key.secret), _verify(verifier, key.secret), _verify(verifier, other.secret)
    assert verifier.lookups == 2  # cached
    verifier.cut(key.prefix)
    _verify(verifier, key.secret)
    _verify(verifier, other.secret)
    assert verifier.lookups == 3  # only the cut key was looked up again


@pytest.mark.parametrize("overlap", [0.3, 1_000_000.0])
def test_a_rotation_cut_keeps_the_cache_for_the_overlap_at_most(overlap: float) -> None:
    verifier, key = CountingVerifier(600), generate_key()
    _verify(verifier, key.secret)
    verifier.cut(key.prefix, within_seconds=overlap)
    _verify(verifier, key.secret)
    assert verifier.lookups == 1  # still within the overlap (and never longer than the cache)
    if overlap < 1:
        asyncio.run(asyncio.sleep(overlap + 0.1))
        _verify(verifier, key.secret)
        assert verifier.lookups == 2


def _request(authorization: str) -> Any:
    return make_mocked_request("GET", "/", headers={"Authorization": authorization})


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_carries_the_key_as_password_or_user_name_only_where_asked() -> None:
    """Confluent clients send `anything:KEY` (the password), Segment's and RudderStack's
    SDKs `KEY:` (the user name, empty password): the password wins when there is one."""
    key = generate_key().secret
    basic = _basic("whoever", key)
    assert presented_key(_request(basic), basic=True) == key
    assert presented_key(_request(basic)) is None  # the other doors keep their own schemes
    assert presented_key(_request(f"Bearer {key}"), basic=True) == key
    assert presented_key(_request("Basic !!not-base64!!"), basic=True) is None
    assert presented_key(_request(_basic(key, "")), basic=True) == key  # Segment's form
    assert presented_key(_request(_basic(key, ""))) is None
    assert presented_key(_request(_basic("", "")), basic=True) is None


def test_new_keys_may_read_schemas_but_not_write_them() -> None:
    assert {"schemas:read", "schemas:write"} <= set(SCOPES)
    assert "schemas:read" in DEFAULT_SCOPES
    assert "schemas:write" not in DEFAULT_SCOPES and "admin" not in DEFAULT_SCOPES


def test_only_a_lookup_of_a_well_formed_uncached_key_is_charged_to_the_address() -> None:
    limiter = KeyRateLimiter(None, None, budget("key lookups", 3 / 60, 60))  # 3 a minute
    verifier = CountingVerifier(600, before_lookup=limiter.admit_lookup)
    known = generate_key()
    _verify(verifier, known.secret, "10.0.0.1")
    for _ in range(5):  # cached: never charged again
        _verify(verifier, known.secret, "10.0.0.1")
    _verify(verifier, "not-a-key", "10.0.0.1")  # malformed: the real lookup refuses it
    # without a database round trip, so it is not charged (this stand-in lets it through)
    _verify(verifier, generate_key().secret, "10.0.0.1")
    _verify(verifier, generate_key().secret, "10.0.0.1")
    with pytest.raises(RateLimited):
        _verify(verifier, generate_key().secret, "10.0.0.1")
    _verify(verifier, generate_key().secret, "10.0.0.2")  # another address has its own
    assert verifier.lookups == 5


def test_the_refused_cache_evicts_its_oldest_never_everything() -> None:
    verifier = RefusingVerifier(600)
    first, *rest = [generate_key().secret for _ in range(_CACHED_KEYS + 1)]
    for key in [first, *rest]:
        with pytest.raises(Unauthenticated):
            _verify(verifier, key)
    assert verifier.lookups == _CACHED_KEYS + 1
    with pytest.raises(Unauthenticated):
        _verify(verifier, rest[-1])  # still remembered
    with pytest.raises(Unauthenticated):
        _verify(verifier, first)  # the oldest went: looked up again
    assert verifier.lookups == _CACHED_KEYS + 2


class RefusingVerifier(CountingVerifier):
    async def _lookup(self, key: str) -> tuple[Principal, datetime | None]:
        self.lookups += 1
        raise Unauthenticated("unknown API key")
