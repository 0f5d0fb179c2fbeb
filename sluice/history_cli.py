"""`sluice events history ID` and `sluice requests show ID`: where is my event, in a terminal.

The same store functions as `GET /v1/events/{id}/history` and `GET /v1/requests/{id}`
(`store.history`), read as one `--tenant` under row-level security. An operator sees the
dead letters' ids and reasons (the CLI connects with DATABASE_URL, like `sluice replay`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import psycopg
from psycopg_pool import AsyncConnectionPool

from runtime.settings import load_settings
from schemas.identity import FAMILIES
from sluice.devstate import environ_with_dev_stack
from sluice.listing import Column, emit, json_option
from store.history import event_history, request_history
from store.tenancy import tenant_connection

T = TypeVar("T")

STEP_COLUMNS = (
    Column("step", "step"),
    Column("at", "at", time=True),
    Column("version", "version"),
    Column("request", "request_id"),
    Column("position", "position"),
    Column("detail", "detail"),
)


def _read(work: Callable[[Any], Awaitable[T]], tenant: str) -> T:
    """Run `work(conn)` on one connection inside `tenant_connection`."""
    settings = load_settings(environ_with_dev_stack())

    async def main() -> T:
        # One plain connection first: a pool would retry an unreachable server for 30 s.
        await (await psycopg.AsyncConnection.connect(settings.database_url,
                                                     connect_timeout=5)).close()  # fmt: skip
        pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=1, open=False)
        async with pool, tenant_connection(pool, tenant) as conn:
            return await work(conn)

    return asyncio.run(main())


_DETAIL_KEYS = ("stage", "attempt", "dead_letter_id", "job_id", "outcome", "deletion_id",
                "by_request_id", "by_version", "status")  # fmt: skip


def step_row(step: dict[str, Any]) -> dict[str, Any]:
    """A step as a table row: its time parsed, its position and details in one cell each."""
    row = dict(step)
    row["at"] = datetime.fromisoformat(step["at"])
    if step.get("offset") is not None:
        index = step.get("index")
        row["position"] = f"p{step.get('partition')}@{step['offset']}" + (
            f"#{index}" if index is not None else ""
        )
    details = [f"{k}={step[k]}" for k in _DETAIL_KEYS if step.get(k) is not None]
    if step.get("reasons"):
        details.append("reasons=" + ",".join(r.get("code", "?") for r in step["reasons"]))
    row["detail"] = " ".join(details) or None
    return row


@click.group()
def events() -> None:
    """Look up stored events."""


@events.command("history")
@click.argument("event_id")
@click.option("--tenant", required=True, help="Tenant the event belongs to.")
@click.option("--family", type=click.Choice(FAMILIES), default="native", show_default=True)
@json_option
def history(event_id: str, tenant: str, family: str, as_json: bool) -> None:
    """Every recorded step of one event, oldest first (--json: one step per line)."""
    found = _read(lambda conn: event_history(conn, tenant, family, event_id, detail=True), tenant)
    if found is None:
        raise click.ClickException("nothing is recorded of this event")
    if as_json:
        emit(found["steps"], STEP_COLUMNS, as_json=True)
        return
    emit([step_row(s) for s in found["steps"]], STEP_COLUMNS, as_json=False)


@click.group()
def requests() -> None:
    """Look up what became of a request's events."""


REQUEST_COLUMNS = (Column("family", "family"), Column("event", "event_id"), *STEP_COLUMNS)


@requests.command("show")
@click.argument("request_id")
@click.option("--tenant", required=True, help="Tenant that sent the request.")
@click.option("--limit", type=click.IntRange(1, 1000), default=1000, show_default=True)
@json_option
def show(request_id: str, tenant: str, limit: int, as_json: bool) -> None:
    """The steps of every event a request carried, event by event (--json: one step per
    line, with its family and event id)."""
    found = _read(
        lambda conn: request_history(conn, tenant, request_id, detail=True, limit=limit), tenant
    )
    if found is None:
        raise click.ClickException("nothing is recorded of this request")
    rows: list[dict[str, Any]] = []
    carried = [*found["events"], *({"event_id": None, **u} for u in found["unidentified"])]
    for event in carried:
        for step in event["steps"]:
            step = {"family": event["family"], "event_id": event["event_id"], **step}
            rows.append(step if as_json else step_row(step))
    emit(rows, REQUEST_COLUMNS, as_json=as_json)
    if found["next_cursor"]:
        click.echo(f"more than {limit} events; showing the first {limit}", err=True)
