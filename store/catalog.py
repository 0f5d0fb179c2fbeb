"""The catalogs some front doors check before accepting events (migration 0005).

Baselime events go to an existing dataset; dakkio points go to an existing
bucket and data source. The CLI writes these rows (synchronous functions);
the door reads them (async functions, inside `tenant_connection`) through a
`KnownNames` cache of recent positive answers, so a burst to one bucket costs
one lookup. Only positive answers are cached: a dataset created a moment ago
is found at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row


def new_object_id() -> str:
    """A MongoDB-style ObjectId: 4 bytes of epoch seconds, then 8 random bytes, in hex."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"


@dataclass(frozen=True)
class Bucket:
    tenant: str
    bucket_id: str
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class DataSource:
    tenant: str
    bucket_id: str
    data_source_id: str
    name: str
    created_at: datetime


def insert_dataset(conn: psycopg.Connection[Any], tenant: str, name: str) -> bool:
    """Create a Baselime dataset; False when it already existed."""
    cur = conn.execute(
        "INSERT INTO baselime_datasets (tenant, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (tenant, name),
    )
    return cur.rowcount == 1


def list_datasets(conn: psycopg.Connection[Any], tenant: str) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM baselime_datasets WHERE tenant = %s ORDER BY name", (tenant,)
    ).fetchall()
    return [row[0] for row in rows]


def insert_bucket(
    conn: psycopg.Connection[Any], tenant: str, bucket_id: str, name: str, description: str = ""
) -> None:
    """Create a dakkio bucket (psycopg.errors.UniqueViolation when the id is taken)."""
    conn.execute(
        "INSERT INTO dakkio_buckets (tenant, bucket_id, name, description) VALUES (%s, %s, %s, %s)",
        (tenant, bucket_id, name, description),
    )


def list_buckets(conn: psycopg.Connection[Any], tenant: str) -> list[Bucket]:
    with conn.cursor(row_factory=class_row(Bucket)) as cur:
        cur.execute(
            "SELECT tenant, bucket_id, name, description, created_at FROM dakkio_buckets"
            " WHERE tenant = %s ORDER BY created_at",
            (tenant,),
        )
        return cur.fetchall()


def insert_data_source(
    conn: psycopg.Connection[Any], tenant: str, bucket_id: str, data_source_id: str, name: str
) -> None:
    """Create a data source in a bucket (ForeignKeyViolation when the bucket does not exist)."""
    conn.execute(
        "INSERT INTO dakkio_data_sources (tenant, bucket_id, data_source_id, name)"
        " VALUES (%s, %s, %s, %s)",
        (tenant, bucket_id, data_source_id, name),
    )


def list_data_sources(
    conn: psycopg.Connection[Any], tenant: str, bucket_id: str
) -> list[DataSource]:
    with conn.cursor(row_factory=class_row(DataSource)) as cur:
        cur.execute(
            "SELECT tenant, bucket_id, data_source_id, name, created_at FROM dakkio_data_sources"
            " WHERE tenant = %s AND bucket_id = %s ORDER BY created_at",
            (tenant, bucket_id),
        )
        return cur.fetchall()


async def dataset_exists(conn: AsyncConnection[Any], tenant: str, name: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM baselime_datasets WHERE tenant = %s AND name = %s", (tenant, name)
    )
    return await cur.fetchone() is not None


async def bucket_exists(conn: AsyncConnection[Any], tenant: str, bucket_id: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM dakkio_buckets WHERE tenant = %s AND bucket_id = %s", (tenant, bucket_id)
    )
    return await cur.fetchone() is not None


async def missing_data_sources(
    conn: AsyncConnection[Any], tenant: str, bucket_id: str, wanted: Collection[str]
) -> set[str]:
    """The ids among `wanted` that are not data sources of the bucket."""
    cur = await conn.execute(
        "SELECT data_source_id FROM dakkio_data_sources"
        " WHERE tenant = %s AND bucket_id = %s AND data_source_id = ANY(%s)",
        (tenant, bucket_id, list(wanted)),
    )
    found = {row[0] for row in await cur.fetchall()}
    return set(wanted) - found


async def catalog_gap(
    conn: AsyncConnection[Any], tenant: str, *, dataset: str | None = None,
    bucket: str | None = None, sources: Collection[str] = (),
) -> str | None:  # fmt: skip
    """What the tenant's catalog lacks for events of a Baselime `dataset` or a dakkio
    `bucket` and its data `sources`, in the door's words; None when nothing is missing.
    The one pre-publish catalog check the doors and the replay share (a dead letter
    refused for a missing dataset, replayed as stored, once became an event in it)."""
    if dataset is not None and not await dataset_exists(conn, tenant, dataset):
        return f"dataset {dataset!r} does not exist (create it with `sluice datasets create`)"
    if bucket is not None:
        if not await bucket_exists(conn, tenant, bucket):
            return "Bucket not found"
        if await missing_data_sources(conn, tenant, bucket, sources):
            return "Data source not found"
    return None


@dataclass(frozen=True)
class DataSourceRow:
    """A data source as the dakkio door shows it (migration 0020's fields included)."""

    bucket_id: str
    data_source_id: str
    name: str
    source_type: str
    description: str
    downsampling: bool
    created_at: datetime
    updated_at: datetime


_SOURCE_COLUMNS = (
    "bucket_id, data_source_id, name, source_type, description, downsampling, created_at,"
    " updated_at"
)
EDITABLE = ("name", "source_type", "description", "downsampling")
"""The columns `change_data_source` may set."""


async def add_data_source(
    conn: AsyncConnection[Any], tenant: str, bucket_id: str, data_source_id: str,
    fields: dict[str, Any],
) -> DataSourceRow:  # fmt: skip
    """Insert a data source with `fields` (of `EDITABLE`); UniqueViolation when the id is
    taken in the bucket, ForeignKeyViolation when the bucket does not exist."""
    chosen = {k: fields[k] for k in EDITABLE if k in fields}
    names = [sql.Identifier(k) for k in ("tenant", "bucket_id", "data_source_id", *chosen)]
    query = sql.SQL("INSERT INTO dakkio_data_sources ({}) VALUES ({}) RETURNING {}").format(
        sql.SQL(", ").join(names), sql.SQL(", ").join(sql.Placeholder() * len(names)),
        sql.SQL(_SOURCE_COLUMNS),
    )  # fmt: skip
    cur = conn.cursor(row_factory=class_row(DataSourceRow))
    await cur.execute(query, (tenant, bucket_id, data_source_id, *chosen.values()))
    row = await cur.fetchone()
    assert row is not None
    return row


async def find_data_source(
    conn: AsyncConnection[Any], tenant: str, bucket_id: str, data_source_id: str, *,
    for_update: bool = False,
) -> DataSourceRow | None:  # fmt: skip
    cur = conn.cursor(row_factory=class_row(DataSourceRow))
    await cur.execute(
        f"SELECT {_SOURCE_COLUMNS} FROM dakkio_data_sources"
        " WHERE tenant = %s AND bucket_id = %s AND data_source_id = %s"
        + (" FOR UPDATE" if for_update else ""),
        (tenant, bucket_id, data_source_id),
    )
    return await cur.fetchone()


async def bucket_data_sources(
    conn: AsyncConnection[Any], tenant: str, bucket_id: str
) -> list[DataSourceRow]:
    cur = conn.cursor(row_factory=class_row(DataSourceRow))
    await cur.execute(
        f"SELECT {_SOURCE_COLUMNS} FROM dakkio_data_sources WHERE tenant = %s AND bucket_id = %s"
        " ORDER BY created_at, data_source_id",
        (tenant, bucket_id),
    )
    return await cur.fetchall()


async def change_data_source(
    conn: AsyncConnection[Any], tenant: str, bucket_id: str, data_source_id: str,
    changes: dict[str, Any],
) -> DataSourceRow | None:  # fmt: skip
    """Set `changes` (of `EDITABLE`) and `updated_at`; None when there is no such source."""
    chosen = {k: changes[k] for k in EDITABLE if k in changes}
    sets = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in chosen]
    query = sql.SQL(
        "UPDATE dakkio_data_sources SET {} WHERE tenant = %s AND bucket_id = %s"
        " AND data_source_id = %s RETURNING {}"
    ).format(sql.SQL(", ").join([*sets, sql.SQL("updated_at = now()")]), sql.SQL(_SOURCE_COLUMNS))
    cur = conn.cursor(row_factory=class_row(DataSourceRow))
    await cur.execute(query, (*chosen.values(), tenant, bucket_id, data_source_id))
    return await cur.fetchone()


class KnownNames:
    """Keys recently found to exist, each remembered for `ttl` seconds (bounded in size)."""

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._until: dict[Hashable, float] = {}

    def known(self, key: Hashable) -> bool:
        until = self._until.get(key)
        return until is not None and until > time.monotonic()

    def remember(self, key: Hashable) -> None:
        if len(self._until) >= self._max:
            self._until.clear()
        self._until[key] = time.monotonic() + self._ttl
