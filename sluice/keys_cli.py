"""`sluice keys`: create, list, revoke and rotate API keys.

The CLI connects with DATABASE_URL (the tables' owner), so it manages every
tenant's keys; the admin API (`producer_api/admin.py`) does the same for one tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
import psycopg

from ingest.keys import DEFAULT_SCOPES, SCOPES, generate_key, key_secrets
from runtime.settings import Settings, load_settings
from schemas.identity import TENANT_PATTERN
from sluice.devstate import environ_with_dev_stack
from sluice.listing import Column, emit, json_option
from store.api_keys import insert_key, list_keys, revoke_key, rotate_key


def _settings() -> Settings:
    """The environment's settings, completed from a running `sluice dev`."""
    return load_settings(environ_with_dev_stack())


def create_key(settings: Settings, tenant: str, scopes: list[str], label: str = "") -> str:
    """Store a new key for `tenant` and return it (the only time it is visible)."""
    if not TENANT_PATTERN.match(tenant):
        raise click.BadParameter("tenant: lowercase letters, digits, '-' and '_', up to 63")
    new = generate_key()
    secret_id, key_hash = key_secrets(settings).hash(new.secret)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        insert_key(
            conn, prefix=new.prefix, tenant=tenant, scopes=scopes, label=label,
            key_hash=key_hash, secret_id=secret_id,
        )  # fmt: skip
    return new.secret


@click.group()
def keys() -> None:
    """Manage API keys (only a keyed hash of each key is stored)."""


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant the key belongs to.")
@click.option(
    "--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
    help="Scope to grant (repeatable); default: every scope but admin.",
)  # fmt: skip
@click.option("--label", default="", help="A note to recognise the key by.")
def create(tenant: str, scopes: tuple[str, ...], label: str) -> None:
    """Create a key and print it once."""
    click.echo(create_key(_settings(), tenant, list(scopes or DEFAULT_SCOPES), label))


@keys.command("list")
@click.option("--tenant", default=None)
@json_option
def list_(tenant: str | None, as_json: bool) -> None:
    """List keys by prefix (never the keys themselves), labels with control characters
    escaped."""
    with psycopg.connect(_settings().database_url) as conn:
        now = datetime.now(UTC)
        rows = [
            {"prefix": k.prefix, "tenant": k.tenant, "state": k.state(now), "scopes": k.scopes,
             "label": k.label, "created_at": k.created_at, "expires_at": k.expires_at,
             "revoked_at": k.revoked_at, "secret_id": k.secret_id}
            for k in list_keys(conn, tenant)
        ]  # fmt: skip
    emit(rows, KEY_COLUMNS, as_json=as_json, now=now)


KEY_COLUMNS = (
    Column("prefix", "prefix"),
    Column("tenant", "tenant"),
    Column("state", "state"),
    Column("scopes", "scopes"),
    Column("created", "created_at", time=True),
    Column("expires", "expires_at", time=True),
    Column("secret", "secret_id"),
    Column("label", "label"),
)
"""`secret`: the id of the server secret that hashed the key (docs/operations.md, rotating)."""


@keys.command("revoke")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke the key with this prefix (stops working within the key cache time)."""
    with psycopg.connect(_settings().database_url, autocommit=True) as conn:
        if not revoke_key(conn, prefix):
            raise click.ClickException(f"no active key with prefix {prefix}")
    click.echo(f"revoked {prefix}")


def rotate_key_now(settings: Settings, prefix: str, overlap: float) -> tuple[str, str] | None:
    """Store a successor of live key `prefix` and return (new key, its tenant), or None.

    The old key keeps working for `overlap` seconds (plus at most the API's key cache
    time), so clients can switch without an outage.
    """
    new = generate_key()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        stored = rotate_key(
            conn, prefix, new_prefix=new.prefix, overlap=overlap,
            new_hash=key_secrets(settings).hash(new.secret),
        )  # fmt: skip
    return None if stored is None else (new.secret, stored.tenant)


@keys.command("rotate")
@click.argument("prefix")
@click.option(
    "--overlap", type=click.FloatRange(min=0), default=86_400.0, show_default=True,
    help="Seconds the old key stays valid after the new one is made.",
)  # fmt: skip
def rotate(prefix: str, overlap: float) -> None:
    """Make a new key with the same tenant, scopes and label; print it once."""
    rotated = rotate_key_now(_settings(), prefix, overlap)
    if rotated is None:
        raise click.ClickException(f"no active key with prefix {prefix}")
    click.echo(rotated[0])
    click.echo(f"{prefix} of {rotated[1]} expires in {overlap:g}s", err=True)
