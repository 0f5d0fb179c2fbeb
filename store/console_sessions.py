"""Console sessions in PostgreSQL (migration 0016): open, find, end.

Only the SHA-256 of a session token is stored or looked up: `token_hash` is what the
callers pass. Opening and ending run inside `tenant_connection` (row-level security);
finding a session by its token hash, before the tenant is known, goes through
`sluice_console_session`, which also moves the session's idle clock and checks that its
key is still the live key it was at sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

_OPEN = """
INSERT INTO console_sessions (token_hash, tenant, key_prefix, key_expires_at, expires_at)
SELECT %(hash)s, tenant, prefix, expires_at,
       least(now() + make_interval(secs => %(max)s), coalesce(expires_at, 'infinity'))
FROM api_keys
WHERE prefix = %(prefix)s AND tenant = %(tenant)s AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now())
RETURNING expires_at
"""

_PRUNE = """
DELETE FROM console_sessions
WHERE tenant = %s AND (expires_at <= now() OR last_seen_at <= now() - make_interval(secs => %s))
"""


@dataclass(frozen=True)
class FoundSession:
    """A live session: whose it is, and the scopes its key holds now."""

    tenant: str
    key_prefix: str
    scopes: list[str]


async def open_session(
    conn: AsyncConnection[Any], *, token_hash: bytes, tenant: str, prefix: str,
    max_seconds: float, idle_seconds: float,
) -> datetime | None:  # fmt: skip
    """Store a session of key `prefix` of `tenant` (dropping the tenant's expired ones);
    its absolute expiry, or None when the key is no longer live. It never outlives an
    expiry its key already has."""
    await conn.execute(_PRUNE, (tenant, idle_seconds))
    cur = await conn.execute(
        _OPEN, {"hash": token_hash, "tenant": tenant, "prefix": prefix, "max": max_seconds}
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def find_session(
    conn: AsyncConnection[Any], token_hash: bytes, idle_seconds: float
) -> FoundSession | None:
    """The live session with `token_hash`, its idle clock moved to now; None otherwise."""
    cur = await conn.execute(
        "SELECT tenant, key_prefix, scopes FROM sluice_console_session(%s, %s)",
        (token_hash, idle_seconds),
    )
    row = await cur.fetchone()
    return FoundSession(row[0], row[1], list(row[2])) if row else None


async def end_session(conn: AsyncConnection[Any], tenant: str, token_hash: bytes) -> bool:
    """Delete the session (sign-out); False when it was already gone."""
    cur = await conn.execute(
        "DELETE FROM console_sessions WHERE tenant = %s AND token_hash = %s", (tenant, token_hash)
    )
    return cur.rowcount == 1
