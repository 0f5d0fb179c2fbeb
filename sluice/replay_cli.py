"""`sluice replay`: list, show, replay and discard dead letters from the command line.

An operator tool: it works straight against PostgreSQL and Kafka with the
process settings, and replays through the same core as the HTTP API
(`ingest.replay`): the same claims, lineage, validation and
acknowledgement rules. Every command is scoped to one `--tenant`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg_pool import AsyncConnectionPool

from ingest import heal as healing
from ingest.contracts import ContractCache
from ingest.publish import Publisher
from ingest.replay import (
    Refusal,
    ReplayCounts,
    ReplayDeps,
    ReplayError,
    replay_matching,
    replay_one,
    replay_record,
)
from runtime.kafka import AsyncProducer, client_config, producer_config
from runtime.registry_client import use_external_registry
from runtime.settings import Settings, load_settings
from schemas.codec import CodecError, decode
from schemas.topics import TopicNames
from sluice.devstate import environ_with_dev_stack
from sluice.listing import Column, emit, json_option
from sluice.unreachable import require_kafka
from store import dead_letters as store
from store.dead_letters import STAGES, STATUSES, DeadLetterFilter, StoredDeadLetter
from store.tenancy import tenant_connection

T = TypeVar("T")


@asynccontextmanager
async def _deps(settings: Settings) -> AsyncIterator[ReplayDeps]:
    """Replay dependencies for one CLI run: a small pool and an acknowledging producer."""
    # One plain connection first: a pool would retry an unreachable server for 30 s.
    await (await psycopg.AsyncConnection.connect(settings.database_url, connect_timeout=5)).close()
    pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=2, open=False)
    await pool.open()
    contracts = ContractCache(pool.connection)
    await contracts.refresh()  # replays are checked against the contracts in force, once
    producer = AsyncProducer(producer_config(settings))
    try:
        yield ReplayDeps(
            pool, Publisher(producer, settings.max_inflight_bytes),
            TopicNames.for_prefix(settings.topic_prefix), settings.partitions,
            max_body_bytes=settings.max_body_bytes, max_events=settings.max_events_per_request,
            keep_events_days=settings.retention_events_days, contracts=lambda: contracts.current,
        )  # fmt: skip
    finally:
        producer.close()
        await pool.close()


def _run(work: Callable[[ReplayDeps], Awaitable[T]], *, kafka: bool = False) -> T:
    """Run `work` with fresh dependencies; a refused replay becomes a clean CLI error.

    `kafka`: the work publishes, so a broker must answer first (else one line, no wait).
    """
    settings = load_settings(environ_with_dev_stack())
    if kafka:
        require_kafka(client_config(settings))
        use_external_registry(settings)  # a replay writes envelopes with the topics' ids

    async def main() -> T:
        async with _deps(settings) as deps:
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


@click.group(invoke_without_command=True)
@click.option("--from-kafka", is_flag=True, help="Reprocess straight from the events.dlq topic.")
@click.option(
    "--since", default=None, help="--from-kafka: written to Kafka at or after (ISO 8601)."
)
@click.option("--until", default=None, help="--from-kafka: written before (default: now).")
@click.option("--tenant", default=None, help="--from-kafka: only this tenant's dead letters.")
@click.option("--reason", default=None, help="--from-kafka: only dead letters with this code.")
@click.option("--group", default=None, help="--from-kafka: consumer group keeping the progress.")
@click.option("--dry-run", is_flag=True, help="--from-kafka: validate only.")
@click.pass_context
def replay(ctx: click.Context, /, from_kafka: bool, since: str | None, **options: Any) -> None:
    """Dead letters: list, show, replay (one, edited, or by filter) and discard.

    `sluice replay --from-kafka --since TIME` reprocesses the dead letters on
    events.dlq itself, for when the database copy is not the source of truth. It
    is resumable: progress is committed to a consumer group named after the
    options (or --group), so running the same command again continues.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not from_kafka:
        click.echo(ctx.get_help())
        return
    if since is None:
        raise click.UsageError("--from-kafka needs --since")
    start = _when(since)
    assert start is not None
    settings = load_settings(environ_with_dev_stack())
    use_external_registry(settings)  # events.dlq may carry that registry's ids
    counts = replay_from_kafka(settings, start, _when(options.pop("until")), **options)
    label = "would replay" if options["dry_run"] else "replayed"
    click.echo(f"{label} {counts.replayed}, still invalid {counts.still_invalid}, "
               f"failed {counts.failed}, skipped {counts.skipped}")  # fmt: skip


@replay.command("list")
@filter_options
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
def list_(tenant: str, status: str | None, limit: int, as_json: bool, **filters: Any) -> None:
    """List dead letters, oldest first: id, received, stage, status, attempt, reasons, size."""
    flt = _filter(status=status, **filters)

    async def work(deps: ReplayDeps) -> list[StoredDeadLetter]:
        async with tenant_connection(deps.pool, tenant) as conn:
            rows, _cursor = await store.find_dead_letters(conn, tenant, flt, limit=limit)
        return rows

    emit([_listed(dead) for dead in _run(work)], DEAD_LETTER_COLUMNS, as_json=as_json)


DEAD_LETTER_COLUMNS = (
    Column("id", "dead_letter_id"),
    Column("received", "received_at", time=True),
    Column("family", "family"),
    Column("stage", "stage"),
    Column("status", "status"),
    Column("attempt", "attempt"),
    Column("reasons", "reasons"),
    Column("event", "event_id"),
    Column("bytes", "bytes"),
)


def _listed(dead: StoredDeadLetter) -> dict[str, Any]:
    """A dead letter as a listing row: its reason codes, not the full reasons or bytes."""
    return {
        "dead_letter_id": dead.id, "received_at": dead.received_at, "family": dead.family,
        "stage": dead.stage, "status": dead.status, "attempt": dead.attempt,
        "reasons": sorted({r.get("code", "?") for r in dead.reasons}),
        "event_id": dead.event_id, "bytes": len(dead.raw),
        "replay_of": str(dead.replay_of) if dead.replay_of else None,
    }  # fmt: skip


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


@replay.command("heal")
@click.argument("subject")
@click.option("--tenant", required=True, help="Tenant whose dead letters to heal.")
@click.option("--dry-run", is_flag=True, help="Count only; publish nothing, change nothing.")
def heal(subject: str, tenant: str, dry_run: bool) -> None:
    """Replay the pending dead letters SUBJECT's current data contract now passes.

    The rest stay pending with their reasons refreshed against that version."""

    async def work(deps: ReplayDeps) -> tuple[healing.Heal, ReplayCounts]:
        prepared = await healing.prepare(deps.pool, tenant, subject, deps.contracts())
        async with tenant_connection(deps.pool, tenant) as conn:
            total = await store.count_dead_letters(conn, tenant, prepared.filter())
        with _bar(total, "checking" if dry_run else "healing") as advance:

            async def progress(step: ReplayCounts) -> None:
                advance(step.done)

            return prepared, await healing.heal(deps, prepared, dry_run=dry_run,
                                                progress=progress)  # fmt: skip

    prepared, counts = _run(work, kafka=not dry_run)
    contract = prepared.contract
    against = f"{subject} version {contract.version} (schema {contract.schema_id})"
    if dry_run:
        click.echo(f"would heal {counts.replayed}, still invalid {counts.still_invalid}, "
                   f"cannot validate {counts.failed}, against {against}")  # fmt: skip
        return
    click.echo(f"healed {counts.replayed}, still invalid {counts.still_invalid} (reasons "
               f"refreshed), cannot validate {counts.failed}, skipped {counts.skipped}, "
               f"against {against}")  # fmt: skip


@replay.command("discard")
@click.argument("dead_letter_ids", nargs=-1, required=True)
@click.option("--tenant", required=True)
@json_option
def discard(dead_letter_ids: tuple[str, ...], tenant: str, as_json: bool) -> None:
    """Discard pending dead letters: they will never be replayed."""

    async def work(deps: ReplayDeps) -> list[str | None]:
        async with tenant_connection(deps.pool, tenant) as conn:
            return [await store.discard(conn, tenant, i) for i in dead_letter_ids]

    statuses = _run(work)
    rows = [{"dead_letter_id": i, "status": status or "not found"}
            for i, status in zip(dead_letter_ids, statuses, strict=True)]  # fmt: skip
    emit(rows, (Column("id", "dead_letter_id"), Column("status", "status")), as_json=as_json)
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

    click.echo(json.dumps(_run(work, kafka=True), indent=2))


def _replay_bulk(tenant: str, flt: DeadLetterFilter, dry_run: bool) -> ReplayCounts:
    async def work(deps: ReplayDeps) -> ReplayCounts:
        pending = DeadLetterFilter(**{**vars(flt), "status": "pending"})
        async with tenant_connection(deps.pool, tenant) as conn:
            total = await store.count_dead_letters(conn, tenant, pending)
        with _bar(total) as advance:

            async def progress(step: ReplayCounts) -> None:
                advance(step.done)

            return await replay_matching(deps, tenant, flt, dry_run=dry_run, progress=progress)

    return _run(work, kafka=True)


class _bar:
    """A click progress bar over `total` dead letters, as a context manager of `advance`."""

    def __init__(self, total: int, label: str = "replaying") -> None:
        self._bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)

    def __enter__(self) -> Callable[[int], None]:
        self._bar.__enter__()
        return self._bar.update

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)  # type: ignore[arg-type]


def replay_from_kafka(
    settings: Settings, since: datetime, until: datetime | None, *, tenant: str | None,
    reason: str | None, group: str | None, dry_run: bool,
) -> ReplayCounts:  # fmt: skip
    """Replay the dead letters written to events.dlq in [since, until), resuming via `group`."""
    key = f"{settings.topic_prefix}|{since.isoformat()}|{until}|{tenant}|{reason}|{dry_run}"
    group = group or f"sluice-replay-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    click.echo(f"consumer group {group}", err=True)

    async def work(deps: ReplayDeps) -> ReplayCounts:
        consumer = Consumer(
            {**client_config(settings), "group.id": group, "enable.auto.commit": False}
        )
        try:
            reader = _DlqRange(consumer, deps.topics.dlq, since, until)
            return await reader.replay(deps, lambda r: _wanted(r, tenant, reason), dry_run)
        finally:
            consumer.close()

    return _run(work, kafka=True)


def _wanted(record: dict[str, Any], tenant: str | None, reason: str | None) -> bool:
    if record["tenant"].startswith("_") or (tenant and record["tenant"] != tenant):
        return False
    return reason is None or any(r["code"] == reason for r in record["reasons"])


def _as_stored(record: dict[str, Any]) -> StoredDeadLetter:
    """A dead letter from events.dlq, shaped like its database row (status pending)."""
    replay_of = record["replay_of"]
    return StoredDeadLetter(
        dead_letter_id=uuid.UUID(record["dead_letter_id"]), tenant=record["tenant"],
        family=record["family"], route=record["route"], content_type=record["content_type"],
        raw=record["raw"], stage=record["stage"], reasons=record["reasons"],
        received_at=record["received_at"], event_id=record["event_id"],
        attempt=record["attempt"], replay_of=uuid.UUID(replay_of) if replay_of else None,
        source_topic=record["source_topic"], source_partition=record["source_partition"],
        source_offset=record["source_offset"], status="pending",
        stored_at=record["received_at"], resolved_at=None, outcome=None,
    )  # fmt: skip


class _DlqRange:
    """The offsets of events.dlq to go through: from the group's committed offset (or the
    first at `since`) to the first at `until` (or the end as it was when the run began)."""

    def __init__(
        self, consumer: Consumer, topic: str, since: datetime, until: datetime | None
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        starts = self._at(partitions, since)
        stops = self._at(partitions, until) if until else {}
        self.ranges: dict[int, tuple[int, int]] = {}
        for p in partitions:
            high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            start = committed[p] if committed[p] >= 0 else starts.get(p, high)
            stop = stops.get(p, high)
            if start < stop:
                self.ranges[p] = (start, stop)

    def _at(self, partitions: list[int], moment: datetime) -> dict[int, int]:
        """Per partition, the first offset written at or after `moment` (absent: none)."""
        millis = int(moment.timestamp() * 1000)
        asked = [TopicPartition(self._topic, p, millis) for p in partitions]
        found = self._consumer.offsets_for_times(asked, timeout=10)
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    async def replay(
        self, deps: ReplayDeps, wanted: Callable[[dict[str, Any]], bool], dry_run: bool
    ) -> ReplayCounts:
        """Replay every wanted dead letter in range; commit the progress after each batch."""
        total = ReplayCounts()
        remaining = dict(self.ranges)
        self._consumer.assign(
            [TopicPartition(self._topic, p, s) for p, (s, _e) in remaining.items()]
        )
        with _bar(sum(e - s for s, e in remaining.values())) as advance:
            while remaining:
                messages = [m for m in self._consumer.consume(200, timeout=1.0) if not m.error()]
                positions: dict[int, int] = {}
                for msg in messages:
                    partition, offset = msg.partition(), msg.offset()
                    if partition is None or offset is None:
                        continue
                    if offset >= remaining.get(partition, (0, -1))[1]:
                        continue
                    positions[partition] = offset + 1
                    await self._replay_message(deps, msg.value(), wanted, dry_run, total)
                for p, position in positions.items():
                    if position >= remaining[p][1]:
                        del remaining[p]
                if positions and not dry_run:
                    done = [TopicPartition(self._topic, p, o) for p, o in positions.items()]
                    self._consumer.commit(offsets=done, asynchronous=False)
                advance(len(messages))
        return total

    @staticmethod
    async def _replay_message(
        deps: ReplayDeps,
        value: bytes | None,
        wanted: Callable[[dict[str, Any]], bool],
        dry_run: bool,
        total: ReplayCounts,
    ) -> None:
        try:
            record = decode(value or b"", "DeadLetter")[1]
        except CodecError:
            total.failed += 1
            return
        if not wanted(record):
            return
        try:
            result = await replay_record(deps, _as_stored(record), dry_run=dry_run)
        except ReplayError as exc:
            if exc.refusal is Refusal.UNAVAILABLE:
                raise
            total.failed += 1
            return
        if result is None:
            total.skipped += 1
        elif result.outcome in ("replayed", "valid"):
            total.replayed += 1
        else:
            total.still_invalid += 1
