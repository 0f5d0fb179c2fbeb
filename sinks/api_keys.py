"""Storage of API keys: only a keyed hash of each key is kept, looked up by its prefix."""

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
    scopes: list[str]
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


_COLUMNS = "prefix, tenant, key_hash, scopes, label, created_at, expires_at, revoked_at"


def insert_key(
    conn: psycopg.Connection[Any],
    *,
    prefix: str,
    tenant: str,
    key_hash: bytes,
    scopes: list[str],
    label: str = "",
) -> None:
    conn.execute(
        "INSERT INTO api_keys (prefix, tenant, key_hash, scopes, label)"
        " VALUES (%s, %s, %s, %s, %s)",
        (prefix, tenant, key_hash, scopes, label),
    )


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
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL",
        (prefix,),
    )
    return cur.rowcount == 1


async def find_key(conn: AsyncConnection[Any], prefix: str) -> StoredKey | None:
    async with conn.cursor(row_factory=class_row(StoredKey)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = %s", (prefix,))
        return await cur.fetchone()
