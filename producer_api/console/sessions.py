"""Console sessions: a random token in an HttpOnly cookie, its SHA-256 in PostgreSQL.

The token is 32 random bytes (base64url). The database keeps only its hash
(`store.console_sessions`), so every API process knows every session and a copy of the
table signs nobody in. The session's CSRF token is a second hash of the same token,
under another label: the page learns it from `GET /console/session` (same origin only,
no CORS anywhere), a forger who cannot read the cookie cannot compute it, and nothing
more is stored. Every request a cookie makes looks the session up (one statement that
also moves its idle clock), so a sign-out, an expiry or a revoked key ends it in every
process at once; there is no session cache to wait for.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from producer_api.auth import Principal
from store.console_sessions import end_session, find_session, open_session
from store.tenancy import tenant_connection

MAX_TOKEN_LENGTH = 64
"""A cookie longer than any token this module makes is refused without a lookup."""


def _digest(label: bytes, token: str) -> bytes:
    return hashlib.sha256(label + b"\0" + token.encode()).digest()


class ConsoleSessions:
    """Opens, finds and ends sessions; the `SessionBook` of the auth path."""

    def __init__(self, pool: AsyncConnectionPool, idle_seconds: float, max_seconds: float):
        self._pool = pool
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds

    @staticmethod
    def token_hash(token: str) -> bytes:
        return _digest(b"sluice console session", token)

    def csrf_token(self, token: str) -> str:
        raw = _digest(b"sluice console csrf", token)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    async def open(self, principal: Principal) -> tuple[str, datetime] | None:
        """A new session of `principal`'s key: (token, absolute expiry); None when the key
        stopped being live since it was verified."""
        token = secrets.token_urlsafe(32)
        async with tenant_connection(self._pool, principal.tenant) as conn:
            expires = await open_session(
                conn, token_hash=self.token_hash(token), tenant=principal.tenant,
                prefix=principal.prefix, max_seconds=self.max_seconds,
                idle_seconds=self.idle_seconds,
            )  # fmt: skip
        return (token, expires) if expires is not None else None

    async def principal(self, token: str) -> Principal | None:
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        async with self._pool.connection() as conn:
            found = await find_session(conn, self.token_hash(token), self.idle_seconds)
        if found is None:
            return None
        return Principal(found.tenant, found.key_prefix, frozenset(found.scopes))

    async def end(self, principal: Principal, token: str) -> bool:
        async with tenant_connection(self._pool, principal.tenant) as conn:
            return await end_session(conn, principal.tenant, self.token_hash(token))
