"""`sluice keys`: create, list and revoke API keys."""

from __future__ import annotations

import click
import psycopg

from producer_api.keys import DEFAULT_SCOPES, SCOPES, generate_key, hash_key
from schemas.identity import TENANT_PATTERN
from sinks.api_keys import insert_key, list_keys, revoke_key
from sluice.settings import Settings, load_settings


def create_key(settings: Settings, tenant: str, scopes: list[str], label: str = "") -> str:
    """Store a new key for `tenant` and return it (the only time it is visible)."""
    if not TENANT_PATTERN.match(tenant):
        raise click.BadParameter("tenant: lowercase letters, digits, '-' and '_', up to 63")
    new = generate_key()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        insert_key(
            conn, prefix=new.prefix, tenant=tenant, scopes=scopes, label=label,
            key_hash=hash_key(settings.key_secret, new.secret),
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
    click.echo(create_key(load_settings(), tenant, list(scopes or DEFAULT_SCOPES), label))


@keys.command("list")
@click.option("--tenant", default=None)
def list_(tenant: str | None) -> None:
    """List keys by prefix (never the keys themselves)."""
    with psycopg.connect(load_settings().database_url) as conn:
        for k in list_keys(conn, tenant):
            state = "revoked" if k.revoked_at else "active"
            click.echo(f"{k.prefix}\t{k.tenant}\t{state}\t{','.join(k.scopes)}\t{k.label}")


@keys.command("revoke")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke the key with this prefix (stops working within the key cache time)."""
    with psycopg.connect(load_settings().database_url, autocommit=True) as conn:
        if not revoke_key(conn, prefix):
            raise click.ClickException(f"no active key with prefix {prefix}")
    click.echo(f"revoked {prefix}")
