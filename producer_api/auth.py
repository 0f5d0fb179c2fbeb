"""Who is calling: the tenant and scopes of the API key, never anything from the body.

Verified keys are cached for `key_cache_seconds`, so a revoked (or rotated-out) key
stops working within that bound in every API process; in the process that revoked or
rotated it, at once (or at the end of the rotation's overlap: `KeyVerifier.cut`). A
refused key is remembered for as long, so a client retrying a bad key does not cost a
database lookup per request (a new key has a new random prefix, so it is never refused
by memory). The key itself is never logged or put in an error message: only its prefix
identifies it.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from ingest.keys import PREFIX_LENGTH, KeySecrets, parse_key
from producer_api.ratelimit import KeyRateLimiter, body_hold
from store.api_keys import find_key, rehash_key
from store.tenancy import tenant_connection

_T = TypeVar("_T")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    tenant: str
    prefix: str
    scopes: frozenset[str]


class Unauthenticated(Exception):
    """No key, or a key that is unknown, revoked, expired or malformed."""


class Forbidden(Exception):
    """A valid key without the scope the route needs."""


class KeyVerifier:
    """Resolves a presented key to a `Principal`, with a short cache."""

    def __init__(
        self, pool: AsyncConnectionPool, secrets: KeySecrets, cache_seconds: float,
        before_lookup: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        self._pool = pool
        self.secrets = secrets
        self._ttl = cache_seconds
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._refused: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._before_lookup = before_lookup

    async def verify(self, key: str | None, client: str = "") -> Principal:
        """The principal of `key`, presented by `client` (its address). A key not in the
        cache costs a database lookup, charged first to `client` by `before_lookup`
        (forged well-formed keys once cost 10,000 lookups in 3.2 s, unauthenticated)."""
        if not key:
            raise Unauthenticated("missing API key")
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        refused = self._refused.get(key)
        if refused is not None and refused[0] > now:
            raise Unauthenticated(refused[1])
        if self._before_lookup is not None and parse_key(key) is not None:
            await self._before_lookup(client)
        try:
            principal, expires_at = await self._lookup(key)
        except Unauthenticated as exc:
            _remember(self._refused, key, (now + self._ttl, str(exc)))
            raise
        ttl = self._ttl
        if expires_at is not None:  # a rotated-out key stops at its expiry, not later
            ttl = min(ttl, (expires_at - datetime.now(UTC)).total_seconds())
        _remember(self._cache, key, (now + ttl, principal))
        return principal

    def cut(self, prefix: str, within_seconds: float = 0.0) -> None:
        """The key with `prefix` was revoked (or rotated with an overlap): this process
        trusts its cached verification for at most `within_seconds` more."""
        until = time.monotonic() + within_seconds
        for key, (expiry, principal) in list(self._cache.items()):
            if principal.prefix == prefix and expiry > until:
                self._cache[key] = (until, principal)

    async def _lookup(self, key: str) -> tuple[Principal, datetime | None]:
        prefix = parse_key(key)
        if prefix is None:
            raise Unauthenticated("malformed API key")
        async with self._pool.connection() as conn:
            stored = await find_key(conn, prefix)
        if stored is None or not self.secrets.matches(key, stored.secret_id, stored.key_hash):
            raise Unauthenticated("unknown API key")
        now = datetime.now(UTC)
        if stored.revoked_at is not None or (stored.expires_at and stored.expires_at <= now):
            raise Unauthenticated("revoked or expired API key")
        if stored.secret_id != self.secrets.current_id:  # hashed with a retired secret
            async with tenant_connection(self._pool, stored.tenant) as conn:
                await rehash_key(conn, stored.prefix, stored.tenant, was=stored.secret_id,
                                 now=self.secrets.hash(key))  # fmt: skip
        principal = Principal(stored.tenant, stored.prefix, frozenset(stored.scopes))
        return principal, stored.expires_at


_CACHED_KEYS = 10_000
"""Keys each cache holds; past it the least recently added goes (flooding the refused
cache with forged keys evicts only older forged keys, never everything at once)."""


def _remember(cache: OrderedDict[str, _T], key: str, value: _T) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHED_KEYS:
        cache.popitem(last=False)


def key_prefix_presented(request: web.Request) -> str:
    """The prefix of the key `request` presents, unverified ("" when none): who a request
    is for before it is authenticated (a forged one is refused before its body is read)."""
    return (presented_key(request, basic=True) or "").partition(".")[0][:PREFIX_LENGTH]


def presented_key(request: web.Request, basic: bool = False) -> str | None:
    """The key from `X-API-Key`, or `Authorization: Bearer …` / `Api-Token …`; with `basic`,
    also `Authorization: Basic …`: its password when there is one (Confluent clients'
    `basic.auth.user.info = anything:KEY`, the user name ignored), else its user name
    (Segment's and RudderStack's SDKs send `WRITE_KEY:` with an empty password)."""
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("bearer", "api-token") and value:
        return value.strip()
    if basic and scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return password.strip() or user.strip() or None
    return None


def has_scope(principal: Principal, scope: str) -> bool:
    """Whether the caller holds `scope` (`admin` implies every scope)."""
    return scope in principal.scopes or "admin" in principal.scopes


def require_scope(principal: Principal, scope: str) -> None:
    if not has_scope(principal, scope):
        raise Forbidden(f"this key lacks the {scope} scope")


SESSION_COOKIE = "sluice_console"
"""The console's session cookie (producer_api/console): a principal like a key."""
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: the only ones a session cookie authorizes without the
session's CSRF token in `CSRF_HEADER`."""


class SessionBook(Protocol):
    """The console's sessions, as the auth path sees them (`producer_api.console.sessions`)."""

    async def principal(self, token: str) -> Principal | None:
        """The principal of a live session, with its key's tenant and current scopes."""
        ...

    def csrf_token(self, token: str) -> str:
        """The CSRF token of the session whose cookie holds `token`."""
        ...


@dataclass(frozen=True)
class Gate:
    """What `authorize` checks a request against: the keys, their request budgets, and the
    console's sessions (None: no cookie is accepted)."""

    keys: KeyVerifier
    limits: KeyRateLimiter
    sessions: SessionBook | None = None


GATE = web.AppKey("gate", Gate)


async def authorize(request: web.Request, scope: str, basic: bool = False) -> Principal:
    """The caller of `request`, who must hold `scope`.

    Counts the request against the key's rate limit. Raises `Unauthenticated`
    (401), `RateLimited` (429) or `Forbidden` (403). The caller's events are
    counted by the ingest entry, against the key named in the request's context.

    Without a key, the console's session cookie stands for the key it was opened with
    (same tenant, the key's scopes now); a write made with it needs the session's CSRF
    token too. A key, when one is presented, always wins over a cookie.
    """
    key = presented_key(request, basic)
    token = request.cookies.get(SESSION_COOKIE)
    if key is None and token:
        principal = await session_principal(request, token)
        gate = request.config_dict[GATE]
        await gate.limits.admit_request(principal.prefix, principal.tenant)
        require_scope(principal, scope)
        body_hold(request).belongs_to(principal.tenant)
        return principal
    return await authorize_key(request, key, scope)


async def session_principal(request: web.Request, token: str) -> Principal:
    """The principal of the console session `token`; Unauthenticated when it ended, and
    Forbidden for a write (any method but GET, HEAD, OPTIONS) without its CSRF token."""
    sessions = request.config_dict[GATE].sessions
    principal = await sessions.principal(token) if sessions is not None and token else None
    if sessions is None or principal is None:
        raise Unauthenticated("no console session: it expired, was signed out, or its key "
                              "was revoked or rotated")  # fmt: skip
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "").encode()
        if not hmac.compare_digest(sent, sessions.csrf_token(token).encode()):
            raise Forbidden(f"a console write needs the session's {CSRF_HEADER} header")
    return principal


async def authorize_key(request: web.Request, key: str | None, scope: str) -> Principal:
    """`authorize` for a key the route found elsewhere than in the headers (PostHog's
    SDKs send it in the body as `api_key`)."""
    gate = request.config_dict[GATE]
    principal = await gate.keys.verify(key, request.remote or "")
    await gate.limits.admit_request(principal.prefix, principal.tenant)
    require_scope(principal, scope)
    body_hold(request).belongs_to(principal.tenant)  # the tenant's share of the body budget
    return principal
