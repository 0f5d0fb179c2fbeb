"""`sluice datasets`, `sluice buckets`, `sluice datasources`: the catalogs some doors check.

Baselime events must name an existing dataset; dakkio points an existing
bucket and one of its data sources. Bucket and data source ids are
MongoDB-style ObjectIds (24 hex digits): generated, or given with `--id` so
devices already configured with an id keep working.
"""

from __future__ import annotations

import click
import psycopg

from runtime.settings import Settings, load_settings
from schemas.families.baselime import NAME_PATTERN
from schemas.families.dakkio import OBJECT_ID
from schemas.identity import TENANT_PATTERN
from sluice.devstate import environ_with_dev_stack
from sluice.listing import Column, emit, json_option
from store.catalog import (
    insert_bucket,
    insert_data_source,
    insert_dataset,
    list_buckets,
    list_data_sources,
    list_datasets,
    new_object_id,
)


def _settings() -> Settings:
    """The environment's settings, completed from a running `sluice dev`."""
    return load_settings(environ_with_dev_stack())


_tenant = click.option("--tenant", required=True, help="Tenant that owns it.")


def _check_tenant(tenant: str) -> None:
    if not TENANT_PATTERN.match(tenant):
        raise click.BadParameter("tenant: lowercase letters, digits, '-' and '_', up to 63")


def _object_id(given: str | None) -> str:
    if given is None:
        return new_object_id()
    if not OBJECT_ID.match(given):
        raise click.BadParameter("--id must be 24 hexadecimal digits")
    return given.lower()


def create_dataset(settings: Settings, tenant: str, name: str) -> bool:
    """Create a Baselime dataset for `tenant`; False when it already existed."""
    _check_tenant(tenant)
    if not NAME_PATTERN.match(name):
        raise click.BadParameter("dataset: letters, digits, '.', '_' and '-', up to 128")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        return insert_dataset(conn, tenant, name)


def create_bucket(
    settings: Settings, tenant: str, name: str, bucket_id: str | None = None, description: str = ""
) -> str:
    """Create a dakkio bucket for `tenant` and return its id."""
    _check_tenant(tenant)
    chosen = _object_id(bucket_id)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        try:
            insert_bucket(conn, tenant, chosen, name, description)
        except psycopg.errors.UniqueViolation as exc:
            raise click.ClickException(f"bucket {chosen} already exists") from exc
    return chosen


def create_data_source(
    settings: Settings, tenant: str, bucket_id: str, name: str, data_source_id: str | None = None
) -> str:
    """Create a data source in one of `tenant`'s buckets and return its id."""
    _check_tenant(tenant)
    chosen = _object_id(data_source_id)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        try:
            insert_data_source(conn, tenant, bucket_id.lower(), chosen, name)
        except psycopg.errors.ForeignKeyViolation as exc:
            raise click.ClickException(f"no bucket {bucket_id} for tenant {tenant}") from exc
        except psycopg.errors.UniqueViolation as exc:
            raise click.ClickException(f"data source {chosen} already exists") from exc
    return chosen


@click.group()
def datasets() -> None:
    """Baselime datasets (events sent to an unknown dataset are refused)."""


@datasets.command("create")
@_tenant
@click.argument("name")
def datasets_create(tenant: str, name: str) -> None:
    """Create dataset NAME."""
    created = create_dataset(_settings(), tenant, name)
    click.echo(f"{'created' if created else 'already exists'}: {name}")


@datasets.command("list")
@_tenant
@json_option
def datasets_list(tenant: str, as_json: bool) -> None:
    """List the tenant's datasets."""
    with psycopg.connect(_settings().database_url) as conn:
        names = list_datasets(conn, tenant)
    emit([{"name": name} for name in names], (Column("name", "name"),), as_json=as_json)


@click.group()
def buckets() -> None:
    """dakkio buckets (points sent to an unknown bucket are answered 404)."""


@buckets.command("create")
@_tenant
@click.option("--name", required=True)
@click.option("--description", default="")
@click.option("--id", "bucket_id", default=None, help="ObjectId to use (default: a new one).")
def buckets_create(tenant: str, name: str, description: str, bucket_id: str | None) -> None:
    """Create a bucket and print its id."""
    click.echo(create_bucket(_settings(), tenant, name, bucket_id, description))


@buckets.command("list")
@_tenant
@json_option
def buckets_list(tenant: str, as_json: bool) -> None:
    """List the tenant's buckets: id, name, description, created."""
    with psycopg.connect(_settings().database_url) as conn:
        rows = [vars(b) for b in list_buckets(conn, tenant)]
    columns = (
        Column("id", "bucket_id"),
        Column("name", "name"),
        Column("description", "description"),
        Column("created", "created_at", time=True),
    )
    emit(rows, columns, as_json=as_json)  # fmt: skip


@click.group()
def datasources() -> None:
    """dakkio data sources, each inside a bucket."""


@datasources.command("create")
@_tenant
@click.option("--bucket", "bucket_id", required=True, help="Bucket id.")
@click.option("--name", required=True)
@click.option("--id", "data_source_id", default=None, help="ObjectId to use (default: new).")
def datasources_create(tenant: str, bucket_id: str, name: str, data_source_id: str | None) -> None:
    """Create a data source and print its id."""
    click.echo(create_data_source(_settings(), tenant, bucket_id, name, data_source_id))


@datasources.command("list")
@_tenant
@click.option("--bucket", "bucket_id", required=True, help="Bucket id.")
@json_option
def datasources_list(tenant: str, bucket_id: str, as_json: bool) -> None:
    """List the data sources of a bucket: id, name, created."""
    with psycopg.connect(_settings().database_url) as conn:
        rows = [vars(ds) for ds in list_data_sources(conn, tenant, bucket_id.lower())]
    columns = (
        Column("id", "data_source_id"),
        Column("name", "name"),
        Column("created", "created_at", time=True),
    )
    emit(rows, columns, as_json=as_json)  # fmt: skip
