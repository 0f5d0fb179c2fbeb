"""`sluice replay`: list, show, replay and discard dead letters from the command line.

An operator tool: it works straight against PostgreSQL and Kafka with the
process settings, and replays through the same core as the HTTP API
(`producer_api.replay`): the same claims, lineage, validation and
acknowledgement rules. Every command is scoped to one `--tenant`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from psycopg_pool import AsyncConnectionPool

from producer_api.publish import Publisher
from producer_api.replay import ReplayCounts, ReplayDeps, ReplayError, replay_matching, replay_one
from schemas.topics import TopicNames
from sinks import dead_letters as store
from sinks.dead_letters import STAGES, STATUSES, DeadLetterFilter, StoredDeadLetter
from sinks.tenancy import tenant_connection
from sluice.kafka import AsyncProducer, producer_config
from sluice.settings import Settings, load_settings

T = TypeVar("T")


@asynccontextmanager
async def _deps(settings: Settings) -> AsyncIterator[ReplayDeps]:
    """Replay dependencies for one CLI run: a small pool and an acknowledging producer."""
    pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=2, open=False)
    await pool.open()
    producer = AsyncProducer(producer_config(settings))
    try:
        yield ReplayDeps(
            pool, Publisher(producer, settings.max_inflight_bytes),
            TopicNames.for_prefix(settings.topic_prefix), settings.partitions,
        )  # fmt: skip
    finally:
        producer.close()
        await pool.close()


def _run(work: Callable[[ReplayDeps], Awaitable[T]]) -> T:
    """Run `work` with fresh dependencies; a refused replay becomes a clean CLI error."""

    async def main() -> T:
        async with _deps(load_settings()) as deps:
            return await work(deps)

    try:
        return asyncio.run(main())
    except ReplayError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from exc


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The filters every listing and bulk command takes (same as `GET /v1/dead-letters`)."""
    options = [
        click.option("--tenant", required=True, help="Tenant whose dead letters to work on."),
        click.option("--family", default=None, help="API family."),
        click.option("--stage", type=click.Choice(STAGES), default=None),
        click.option("--reason", default=None, help="Reason code, e.g. invalid_timestamp."),
        click.option("--since", default=None, help="Received at or after (ISO 8601)."),
        click.option("--until", default=None, help="Received before (ISO 8601)."),
        click.option("--text", default=None, help="Text the raw body contains."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _filter(
    family: str | None,
    stage: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    text: str | None,
    status: str | None = None,
) -> DeadLetterFilter:
    return DeadLetterFilter(family=family, stage=stage, reason=reason, status=status,
                            time_from=_when(since), time_to=_when(until), text=text)  # fmt: skip


@click.group()
def replay() -> None:
    """Dead letters: list, show, replay (one, edited, or by filter) and discard."""


@replay.command("list")
@filter_options
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--limit", type=int, default=100, show_default=True)
def list_(tenant: str, status: str | None, limit: int, **filters: Any) -> None:
    """List dead letters, oldest first: id, received, stage, status, reasons, size."""
    flt = _filter(status=status, **filters)

    async def work(deps: ReplayDeps) -> list[StoredDeadLetter]:
        async with tenant_connection(deps.pool, tenant) as conn:
            rows, _cursor = await store.find_dead_letters(conn, tenant, flt, limit=limit)
        return rows

    for dead in _run(work):
        codes = ",".join(sorted({r.get("code", "?") for r in dead.reasons}))
        click.echo(f"{dead.id}\t{dead.received_at.isoformat()}\t{dead.stage}\t{dead.status}"
                   f"\tattempt {dead.attempt}\t{codes}\t{len(dead.raw)} bytes")  # fmt: skip


@replay.command("show")
@click.argument("dead_letter_id")
@click.option("--tenant", required=True)
@click.option("--raw", is_flag=True, help="Write only the raw bytes, exactly, to stdout.")
def show(dead_letter_id: str, tenant: str, raw: bool) -> None:
    """Show one dead letter (or its exact raw bytes with --raw)."""

    async def work(deps: ReplayDeps) -> StoredDeadLetter | None:
        async with tenant_connection(deps.pool, tenant) as conn:
            return await store.get_dead_letter(conn, tenant, dead_letter_id)

    dead = _run(work)
    if dead is None:
        raise click.ClickException("no such dead letter")
    if raw:
        sys.stdout.buffer.write(dead.raw)
        sys.stdout.buffer.flush()
        return
    shown = {k: v for k, v in vars(dead).items() if k != "raw"}
    shown["raw_base64"] = base64.b64encode(dead.raw).decode()
    click.echo(json.dumps(shown, indent=2, default=str))


@replay.command("replay")
@click.argument("dead_letter_id", required=False)
@filter_options
@click.option("--dry-run", is_flag=True, help="Validate only; publish nothing, change nothing.")
@click.option("--edit", is_flag=True, help="Correct the raw body in $EDITOR first (one id).")
def replay_(dead_letter_id: str | None, tenant: str, dry_run: bool, edit: bool,
            **filters: Any) -> None:  # fmt: skip
    """Replay one dead letter by id, or every pending one matching the filters."""
    if dead_letter_id is not None:
        _replay_one(dead_letter_id, tenant, dry_run, edit)
        return
    if edit:
        raise click.UsageError("--edit needs one dead-letter id")
    flt = _filter(**filters)
    counts = _replay_bulk(tenant, flt, dry_run)
    label = "would replay" if dry_run else "replayed"
    click.echo(f"{label} {counts.replayed}, still invalid {counts.still_invalid}, "
               f"failed {counts.failed}, skipped {counts.skipped}")  # fmt: skip


@replay.command("discard")
@click.argument("dead_letter_ids", nargs=-1, required=True)
@click.option("--tenant", required=True)
def discard(dead_letter_ids: tuple[str, ...], tenant: str) -> None:
    """Discard pending dead letters: they will never be replayed."""

    async def work(deps: ReplayDeps) -> list[str | None]:
        async with tenant_connection(deps.pool, tenant) as conn:
            return [await store.discard(conn, tenant, i) for i in dead_letter_ids]

    statuses = _run(work)
    for dead_letter_id, status in zip(dead_letter_ids, statuses, strict=True):
        click.echo(f"{dead_letter_id}\t{status or 'not found'}")
    if any(status != "discarded" for status in statuses):
        raise click.ClickException("some dead letters were not pending")


def _replay_one(dead_letter_id: str, tenant: str, dry_run: bool, edit: bool) -> None:
    body: bytes | None = None
    if edit:

        async def fetch(deps: ReplayDeps) -> StoredDeadLetter | None:
            async with tenant_connection(deps.pool, tenant) as conn:
                return await store.get_dead_letter(conn, tenant, dead_letter_id)

        dead = _run(fetch)
        if dead is None:
            raise click.ClickException("no such dead letter")
        body = click.edit(dead.raw, extension=".json")
        if body is None:
            raise click.ClickException("the body was not saved; nothing replayed")

    async def work(deps: ReplayDeps) -> dict[str, Any]:
        result = await replay_one(deps, tenant, dead_letter_id, body=body, dry_run=dry_run)
        return result.as_dict()

    click.echo(json.dumps(_run(work), indent=2))


def _replay_bulk(tenant: str, flt: DeadLetterFilter, dry_run: bool) -> ReplayCounts:
    async def work(deps: ReplayDeps) -> ReplayCounts:
        pending = DeadLetterFilter(**{**vars(flt), "status": "pending"})
        async with tenant_connection(deps.pool, tenant) as conn:
            total = await store.count_dead_letters(conn, tenant, pending)
        with _bar(total) as advance:

            async def progress(step: ReplayCounts) -> None:
                advance(step.done)

            return await replay_matching(deps, tenant, flt, dry_run=dry_run, progress=progress)

    return _run(work)


class _bar:
    """A click progress bar over `total` dead letters, as a context manager of `advance`."""

    def __init__(self, total: int) -> None:
        self._bar = click.progressbar(length=max(total, 1), label="replaying", file=sys.stderr)

    def __enter__(self) -> Callable[[int], None]:
        self._bar.__enter__()
        return self._bar.update

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)  # type: ignore[arg-type]
