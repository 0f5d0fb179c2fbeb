"""dakkio data sources with their schemas: the catalog row and the contract, together.

A data source's `schema` is the latest version of the registry subject
`dakkio.<dataSourceId>` (`schemas.families.dakkio_schema` maps one to the other). Creating
or updating a data source with a schema registers a version in the same tenant
transaction as the row, under the registry's own rules (`ingest.registry.register_on`):
an incompatible schema raises `Incompatible` and neither the row nor the version is
written. Reading one returns the subject's latest version, whoever registered it (this
door, `sluice schemas`, or any Confluent client).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ingest.registry import RegistryError, latest_on, register_on
from schemas.compatibility import InvalidSchema, parse
from store import catalog
from store.catalog import DataSourceRow
from store.registry import StoredVersion
from store.tenancy import tenant_connection


class SourceRefused(Exception):
    """A request the catalog refuses: `status` and the message dakkio would answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def bucket_not_found() -> SourceRefused:
    return SourceRefused(404, "Bucket not found")


def source_not_found() -> SourceRefused:
    return SourceRefused(404, "Data source not found")


@dataclass(frozen=True)
class DataSourceView:
    """A data source and its schema's latest registry version (None: it has no schema)."""

    row: DataSourceRow
    latest: StoredVersion | None


def subject_of(data_source_id: str) -> str:
    """The registry subject holding the data source's schema (`schemas.contracts`)."""
    return f"dakkio.{data_source_id.lower()}"


async def create(
    pool: AsyncConnectionPool, tenant: str, bucket_id: str, data_source_id: str,
    fields: dict[str, Any], contract: str,
) -> DataSourceView:  # fmt: skip
    """A new data source with `fields` (`store.catalog.EDITABLE`) and schema `contract`."""
    parsed = await _parsed(contract)
    async with tenant_connection(pool, tenant) as conn:
        if not await catalog.bucket_exists(conn, tenant, bucket_id):
            raise bucket_not_found()
        try:
            async with conn.transaction():  # a savepoint: the refusal leaves the rest usable
                row = await catalog.add_data_source(conn, tenant, bucket_id, data_source_id,
                                                    fields)  # fmt: skip
        except psycopg.errors.UniqueViolation as exc:
            raise SourceRefused(409, "A data source with this id already exists") from exc
        await register_on(conn, tenant, subject_of(data_source_id), parsed)
        return await _view(conn, tenant, row)


async def update(
    pool: AsyncConnectionPool, tenant: str, bucket_id: str, data_source_id: str,
    changes: dict[str, Any], contract: str | None,
) -> DataSourceView:  # fmt: skip
    """Change a data source's fields, and register `contract` as its schema when given."""
    parsed = None if contract is None else await _parsed(contract)
    async with tenant_connection(pool, tenant) as conn:
        await _existing(conn, tenant, bucket_id, data_source_id, for_update=True)
        if parsed is not None:
            await register_on(conn, tenant, subject_of(data_source_id), parsed)
        row = await catalog.change_data_source(conn, tenant, bucket_id, data_source_id, changes)
        if row is None:  # deleted with its bucket meanwhile
            raise source_not_found()
        return await _view(conn, tenant, row)


async def get(
    pool: AsyncConnectionPool, tenant: str, bucket_id: str, data_source_id: str
) -> DataSourceView:
    async with tenant_connection(pool, tenant) as conn:
        row = await _existing(conn, tenant, bucket_id, data_source_id)
        return await _view(conn, tenant, row)


async def list_in_bucket(
    pool: AsyncConnectionPool, tenant: str, bucket_id: str
) -> list[DataSourceView]:
    async with tenant_connection(pool, tenant) as conn:
        if not await catalog.bucket_exists(conn, tenant, bucket_id):
            raise bucket_not_found()
        rows = await catalog.bucket_data_sources(conn, tenant, bucket_id)
        return [await _view(conn, tenant, row) for row in rows]


async def _existing(
    conn: AsyncConnection[Any], tenant: str, bucket_id: str, data_source_id: str,
    for_update: bool = False,
) -> DataSourceRow:  # fmt: skip
    if not await catalog.bucket_exists(conn, tenant, bucket_id):
        raise bucket_not_found()
    row = await catalog.find_data_source(conn, tenant, bucket_id, data_source_id,
                                         for_update=for_update)  # fmt: skip
    if row is None:
        raise source_not_found()
    return row


async def _view(conn: AsyncConnection[Any], tenant: str, row: DataSourceRow) -> DataSourceView:
    return DataSourceView(row, await latest_on(conn, tenant, subject_of(row.data_source_id)))


async def _parsed(contract: str) -> Any:
    try:
        return await asyncio.to_thread(parse, "JSON", contract)
    except InvalidSchema as exc:  # the mapping writes valid schemas; this is a second wall
        raise RegistryError(422, 42201, str(exc)) from exc
