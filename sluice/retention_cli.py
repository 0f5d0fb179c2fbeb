"""`sluice retention set|show|clear|run`: how long a tenant keeps events and dead letters.

The same rules as `PUT /v1/admin/retention` (`producer_api.retention`); `run` applies the
tenant's rules now through the same runner the API process runs on its timer
(`ingest.retention`), against PostgreSQL and Kafka with the process settings.
"""

from __future__ import annotations

from typing import Any

import click

from ingest.replay import ReplayDeps
from ingest.retention import BadPolicy, RetentionRunner, RunReport, parse_keep_days, parse_target
from runtime.settings import load_settings
from sluice.devstate import environ_with_dev_stack
from sluice.listing import Column, emit, json_option
from sluice.replay_cli import _run
from store import retention as store
from store.tenancy import tenant_connection

COLUMNS = (
    Column("kind", "kind"),
    Column("family", "family"),
    Column("type", "type"),
    Column("keep days", "keep_days"),
    Column("last run", "last_run_at", time=True),
    Column("last cut", "last_cut", time=True),
)


def _target(kind: str, family: str, event_type: str | None) -> tuple[str, str, str]:
    try:
        return parse_target({"kind": kind, "family": family, "type": event_type})
    except BadPolicy as exc:
        raise click.BadParameter(str(exc)) from exc


def target_options(command: Any) -> Any:
    for option in reversed([
        click.option("--tenant", required=True),
        click.option("--kind", type=click.Choice(store.KINDS), default="events",
                     show_default=True, help="events (by event time) or dead_letters."),
        click.option("--family", required=True, help="API family, e.g. native."),
        click.option("--type", "event_type", default=None, help="One event type (events only)."),
    ]):  # fmt: skip
        command = option(command)
    return command


@click.group()
def retention() -> None:
    """Retention policies: how long events and dead letters are kept."""


@retention.command("set")
@target_options
@click.option("--days", type=float, required=True, help="Keep this many days (fractions ok).")
def set_(tenant: str, kind: str, family: str, event_type: str | None, days: float) -> None:
    """Set a policy (replacing the one of the same kind, family and type)."""
    target = _target(kind, family, event_type)
    try:
        keep = parse_keep_days(days)
    except BadPolicy as exc:
        raise click.BadParameter(str(exc), param_hint="--days") from exc

    async def work(deps: ReplayDeps) -> store.Policy:
        async with tenant_connection(deps.pool, tenant) as conn:
            return await store.put_policy(conn, tenant, *target, keep)

    emit([_row(_run(work).as_json())], COLUMNS, as_json=False)


@retention.command("show")
@click.option("--tenant", required=True)
@json_option
def show(tenant: str, as_json: bool) -> None:
    """The tenant's policies (the defaults apply to every family without one)."""

    async def work(deps: ReplayDeps) -> list[store.Policy]:
        async with tenant_connection(deps.pool, tenant) as conn:
            return await store.policies(conn, tenant)

    emit([_row(p.as_json()) for p in _run(work)], COLUMNS, as_json=as_json)
    settings = load_settings(environ_with_dev_stack())
    if not as_json:
        click.echo(f"defaults: events {settings.retention_events_days or 'forever'} days, "
                   f"dead letters {settings.retention_dead_letters_days or 'forever'} days "
                   "(SLUICE_RETENTION_EVENTS_DAYS, SLUICE_RETENTION_DEAD_LETTERS_DAYS)",
                   err=True)  # fmt: skip


@retention.command("clear")
@target_options
def clear(tenant: str, kind: str, family: str, event_type: str | None) -> None:
    """Clear a policy: the default applies again."""
    target = _target(kind, family, event_type)

    async def work(deps: ReplayDeps) -> bool:
        async with tenant_connection(deps.pool, tenant) as conn:
            return await store.clear_policy(conn, tenant, *target)

    if not _run(work):
        raise click.ClickException("no such retention policy")
    click.echo("cleared")


@retention.command("run")
@click.option("--tenant", required=True)
def run(tenant: str) -> None:
    """Apply the tenant's rules now; waits for the sink to apply each step."""
    settings = load_settings(environ_with_dev_stack())

    async def work(deps: ReplayDeps) -> RunReport:
        return await RetentionRunner(deps.entry(), settings).run_tenant(tenant)

    report = _run(work, kafka=True)
    click.echo(f"removed {report.events_removed} events in {len(report.receipts)} steps, "
               f"{report.dead_letters_removed} dead letters")  # fmt: skip


def _row(policy: dict[str, Any]) -> dict[str, Any]:
    return {**policy, "type": policy["type"] or "(all)"}
