"""The Schema Registry's tables (migration 0008): schemas by id, subjects' versions, configs.

Every function takes a connection inside `tenant_connection` (or `system_connection` for
Sluice's own rows) and names the tenant too; `owner` is the tenant whose subject it is,
'' for Sluice's own. Sluice's own schemas keep the ids they had before the registry
(1-999); tenants' come from the sequence `registry_schema_ids` (from 1000).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from store.tenancy import TENANT_SETTING

SYSTEM = ""
"""The owner of Sluice's own schemas and subjects."""


@dataclass(frozen=True)
class StoredSchema:
    id: int
    schema_type: str
    schema: str


@dataclass(frozen=True)
class StoredVersion:
    subject: str
    version: int
    id: int
    schema_type: str
    schema: str
    deleted: bool


@asynccontextmanager
async def system_connection(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection[Any]]:
    """A transaction that may write Sluice's own registry rows (tenant '')."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config(%s, '', true), set_config('sluice.registry_system', 'on', true)",
            (TENANT_SETTING,),
        )
        yield conn


async def put_own_schema(
    conn: AsyncConnection[Any], schema_id: int, text: str, fingerprint: bytes
) -> None:
    await conn.execute(
        "INSERT INTO registry_schemas (id, tenant, schema_type, schema, fingerprint)"
        " VALUES (%s, '', 'AVRO', %s, %s) ON CONFLICT DO NOTHING",
        (schema_id, text, fingerprint),
    )


async def put_own_version(
    conn: AsyncConnection[Any], subject: str, version: int, schema_id: int
) -> None:
    await conn.execute(
        "INSERT INTO registry_versions (tenant, subject, version, schema_id)"
        " VALUES ('', %s, %s, %s) ON CONFLICT DO NOTHING",
        (subject, version, schema_id),
    )


async def schema_by_id(
    conn: AsyncConnection[Any], tenant: str, schema_id: int
) -> StoredSchema | None:
    cur = conn.cursor(row_factory=class_row(StoredSchema))
    await cur.execute(
        "SELECT id, schema_type, schema FROM registry_schemas WHERE id = %s AND tenant IN (%s, '')",
        (schema_id, tenant),
    )
    return await cur.fetchone()


async def schema_by_fingerprint(
    conn: AsyncConnection[Any], tenant: str, schema_type: str, fingerprint: bytes
) -> int | None:
    cur = await conn.execute(
        "SELECT id FROM registry_schemas WHERE tenant = %s AND schema_type = %s"
        " AND fingerprint = %s",
        (tenant, schema_type, fingerprint),
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def insert_schema(
    conn: AsyncConnection[Any], tenant: str, schema_type: str, text: str, fingerprint: bytes
) -> int:
    """The id of the tenant's schema: a new one, or the one a concurrent registration of the
    same schema (under another subject) committed first."""
    cur = await conn.execute(
        "INSERT INTO registry_schemas (id, tenant, schema_type, schema, fingerprint)"
        " VALUES (nextval('registry_schema_ids'), %s, %s, %s, %s)"
        " ON CONFLICT (tenant, schema_type, fingerprint) DO NOTHING RETURNING id",
        (tenant, schema_type, text, fingerprint),
    )
    row = await cur.fetchone()
    if row is not None:
        return int(row[0])
    found = await schema_by_fingerprint(conn, tenant, schema_type, fingerprint)
    assert found is not None
    return found


async def uses_of_schema(
    conn: AsyncConnection[Any], tenant: str, schema_id: int, deleted: bool
) -> list[tuple[str, int]]:
    """(subject, version) of every version with `schema_id` that `tenant` may see."""
    cur = await conn.execute(
        "SELECT subject, version FROM registry_versions WHERE schema_id = %s"
        " AND tenant IN (%s, '') AND (%s OR NOT deleted) ORDER BY subject, version",
        (schema_id, tenant, deleted),
    )
    return [(str(s), int(v)) for s, v in await cur.fetchall()]


async def subjects(conn: AsyncConnection[Any], tenant: str, deleted: bool) -> list[str]:
    cur = await conn.execute(
        "SELECT DISTINCT subject FROM registry_versions WHERE tenant IN (%s, '')"
        " AND (%s OR NOT deleted) ORDER BY subject",
        (tenant, deleted),
    )
    return [str(row[0]) for row in await cur.fetchall()]


async def owner_of(conn: AsyncConnection[Any], tenant: str, subject: str) -> str | None:
    """Whose `subject` is, as `tenant` sees it: `tenant`, `SYSTEM`, or None (no such one)."""
    cur = await conn.execute(
        "SELECT tenant FROM registry_versions WHERE subject = %s AND tenant IN (%s, '')"
        " ORDER BY tenant = '' LIMIT 1",
        (subject, tenant),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def versions(
    conn: AsyncConnection[Any], owner: str, subject: str, deleted: bool
) -> list[StoredVersion]:
    """The subject's versions, oldest first (soft-deleted ones only when `deleted`)."""
    cur = conn.cursor(row_factory=class_row(StoredVersion))
    await cur.execute(
        "SELECT v.subject, v.version, v.schema_id AS id, s.schema_type, s.schema, v.deleted"
        " FROM registry_versions v JOIN registry_schemas s ON s.id = v.schema_id"
        " WHERE v.tenant = %s AND v.subject = %s AND (%s OR NOT v.deleted)"
        " ORDER BY v.version",
        (owner, subject, deleted),
    )
    return await cur.fetchall()


async def lock_subject(conn: AsyncConnection[Any], tenant: str, subject: str) -> None:
    """Serialise writers of one subject until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 17))", (f"{tenant}\x1f{subject}",)
    )


async def insert_version(
    conn: AsyncConnection[Any], tenant: str, subject: str, schema_id: int
) -> int:
    """A new version (one above every version the subject ever had) of `schema_id`."""
    cur = await conn.execute(
        "INSERT INTO registry_versions (tenant, subject, version, schema_id)"
        " SELECT %s, %s, coalesce(max(version), 0) + 1, %s FROM registry_versions"
        " WHERE tenant = %s AND subject = %s RETURNING version",
        (tenant, subject, schema_id, tenant, subject),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def soft_delete(
    conn: AsyncConnection[Any], tenant: str, subject: str, version: int | None
) -> list[int]:
    """Mark the subject's live versions (or one) deleted; the versions it marked."""
    cur = await conn.execute(
        "UPDATE registry_versions SET deleted = true WHERE tenant = %s AND subject = %s"
        " AND NOT deleted AND (%s::int IS NULL OR version = %s) RETURNING version",
        (tenant, subject, version, version),
    )
    return sorted(int(row[0]) for row in await cur.fetchall())


async def hard_delete(
    conn: AsyncConnection[Any], tenant: str, subject: str, version: int | None
) -> list[int]:
    """Remove the subject's soft-deleted versions (or one); the versions it removed."""
    cur = await conn.execute(
        "DELETE FROM registry_versions WHERE tenant = %s AND subject = %s AND deleted"
        " AND (%s::int IS NULL OR version = %s) RETURNING version",
        (tenant, subject, version, version),
    )
    return sorted(int(row[0]) for row in await cur.fetchall())


async def config(conn: AsyncConnection[Any], tenant: str, subject: str) -> str | None:
    """The compatibility set for `subject` ('' for the tenant's global level), or None."""
    cur = await conn.execute(
        "SELECT compatibility FROM registry_config WHERE tenant = %s AND subject = %s",
        (tenant, subject),
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def set_config(
    conn: AsyncConnection[Any], tenant: str, subject: str, compatibility: str
) -> None:
    await conn.execute(
        "INSERT INTO registry_config (tenant, subject, compatibility) VALUES (%s, %s, %s)"
        " ON CONFLICT (tenant, subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
        (tenant, subject, compatibility),
    )
