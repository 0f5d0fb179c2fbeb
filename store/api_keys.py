"""Storage of API keys: only a keyed hash of each key is kept, looked up by its prefix.

Two callers: the `sluice keys` CLI (synchronous, connected as the tables' owner,
any tenant) and the admin API (asynchronous, inside `tenant_connection`, so
row-level security confines it to the caller's tenant, and every statement names
the tenant too). The API's key lookup goes through `sluice_find_api_key`, the one
function that may read a key row before the tenant is known (migration 0004).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import class_row


@dataclass(frozen=True)
class StoredKey:
    prefix: str
    tenant: str
    key_hash: bytes
    secret_id: str
    scopes: list[str]
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """`active`, `expiring` (rotated, still inside its overlap), `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is None:
            return "active"
        return "expiring" if self.expires_at > now else "expired"


_COLUMNS = "prefix, tenant, key_hash, secret_id, scopes, label, created_at, expires_at, revoked_at"

_INSERT = (
    "INSERT INTO api_keys (prefix, tenant, key_hash, secret_id, scopes, label)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)

_REVOKE = """
UPDATE api_keys SET revoked_at = now()
WHERE prefix = %s AND tenant = coalesce(%s::text, tenant) AND revoked_at IS NULL
"""

# Rotation in one statement: the old key gets an expiry `overlap` seconds from now
# (never later than one it already had) and the new key copies its tenant, scopes
# and label. Nothing happens unless the old key is live.
_ROTATE = f"""
WITH old AS (
    UPDATE api_keys
    SET expires_at = least(coalesce(expires_at, 'infinity'::timestamptz),
                           now() + make_interval(secs => %s))
    WHERE prefix = %s AND tenant = coalesce(%s::text, tenant)
      AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
    RETURNING tenant, scopes, label
)
INSERT INTO api_keys (prefix, tenant, key_hash, secret_id, scopes, label)
SELECT %s, tenant, %s, %s, scopes, label FROM old
RETURNING {_COLUMNS}
"""


def insert_key(
    conn: psycopg.Connection[Any],
    *,
    prefix: str,
    tenant: str,
    key_hash: bytes,
    secret_id: str,
    scopes: list[str],
    label: str = "",
) -> None:
    conn.execute(_INSERT, (prefix, tenant, key_hash, secret_id, scopes, label))


def list_keys(conn: psycopg.Connection[Any], tenant: str | None = None) -> list[StoredKey]:
    with conn.cursor(row_factory=class_row(StoredKey)) as cur:
        if tenant is None:
            cur.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY tenant, created_at")
        else:
            cur.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE tenant = %s ORDER BY created_at",
                (tenant,),
            )
        return cur.fetchall()


def revoke_key(conn: psycopg.Connection[Any], prefix: str) -> bool:
    """Mark the key revoked; False when no such live key exists."""
    return conn.execute(_REVOKE, (prefix, None)).rowcount == 1


def rotate_key(
    conn: psycopg.Connection[Any], prefix: str, *, new_prefix: str,
    new_hash: tuple[str, bytes], overlap: float,
) -> StoredKey | None:  # fmt: skip
    """Store the successor of live key `prefix` (its `new_hash` is (secret id, hash)); the
    old one expires after `overlap` seconds."""
    with conn.cursor(row_factory=class_row(StoredKey)) as cur:
        cur.execute(_ROTATE, (overlap, prefix, None, new_prefix, new_hash[1], new_hash[0]))
        return cur.fetchone()


async def find_key(conn: AsyncConnection[Any], prefix: str) -> StoredKey | None:
    """The key with `prefix`, whatever its tenant (for verifying a presented key)."""
    async with conn.cursor(row_factory=class_row(StoredKey)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM sluice_find_api_key(%s)", (prefix,))
        return await cur.fetchone()


async def insert_tenant_key(
    conn: AsyncConnection[Any],
    *,
    prefix: str,
    tenant: str,
    key_hash: bytes,
    secret_id: str,
    scopes: list[str],
    label: str,
) -> None:
    await conn.execute(_INSERT, (prefix, tenant, key_hash, secret_id, scopes, label))


async def rehash_key(
    conn: AsyncConnection[Any], prefix: str, tenant: str, *, was: str, now: tuple[str, bytes]
) -> bool:
    """Store key `prefix`'s hash under the current secret (`now`: secret id, hash) in place
    of the one made with secret `was`; False when another process already did."""
    moved = await conn.execute(
        "UPDATE api_keys SET secret_id = %s, key_hash = %s"
        " WHERE prefix = %s AND tenant = %s AND secret_id = %s",
        (now[0], now[1], prefix, tenant, was),
    )
    return moved.rowcount == 1


async def live_tenant_keys(conn: AsyncConnection[Any], tenant: str) -> int:
    """How many keys of `tenant` still work, counted under a lock on the tenant's key
    creation held to the end of the transaction (two creations cannot both pass a cap)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sluice.api_keys:' || %s))",
                       (tenant,))  # fmt: skip
    cur = await conn.execute(
        "SELECT count(*) FROM api_keys WHERE tenant = %s AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())",
        (tenant,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def list_tenant_keys(conn: AsyncConnection[Any], tenant: str) -> list[StoredKey]:
    async with conn.cursor(row_factory=class_row(StoredKey)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant = %s ORDER BY created_at, prefix",
            (tenant,),
        )
        return await cur.fetchall()


async def revoke_tenant_key(conn: AsyncConnection[Any], tenant: str, prefix: str) -> bool:
    """Revoke `tenant`'s live key `prefix`; False when it has none by that prefix."""
    cur = await conn.execute(_REVOKE, (prefix, tenant))
    return cur.rowcount == 1


async def rotate_tenant_key(
    conn: AsyncConnection[Any],
    tenant: str,
    prefix: str,
    *,
    new_prefix: str,
    new_hash: tuple[str, bytes],
    overlap: float,
) -> StoredKey | None:
    """Like `rotate_key`, for a key of `tenant` only."""
    async with conn.cursor(row_factory=class_row(StoredKey)) as cur:
        await cur.execute(_ROTATE, (overlap, prefix, tenant, new_prefix, new_hash[1], new_hash[0]))
        return await cur.fetchone()
