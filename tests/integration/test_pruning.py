"""Pruning deletion records never lets a deleted event come back (issue 20), on real Kafka
and PostgreSQL: a record goes only when `ingest.raw` no longer holds anything older than it
(its earliest offsets moved past, as retention moves them) and it is older than every
topic's retention; the records kept still refuse the older versions Kafka can present."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg_pool import AsyncConnectionPool

from ingest.pruning import prune_now
from runtime.kafka import client_config
from runtime.topic_admin import ensure_topics
from schemas.codec import encode
from schemas.identity import Identity
from schemas.topics import TopicNames
from schemas.versions import version_of
from sinks.batch import SinkBatch, write_batch
from sinks.records import event_record
from sluice.stack import ProcessStack
from store.tenancy import assume_role
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call
from tests.sinks.test_newest_wins_machine import Msg, Record

pytestmark = pytest.mark.integration

EARLIEST = 10
"""`ingest.raw`'s earliest offset in every partition once its older records are deleted."""


def _advance_ingest_raw(settings: Any, topics: TopicNames) -> None:
    """20 envelopes on every partition, then the first 10 deleted, as retention would."""
    producer = Producer(client_config(settings))
    for p in range(settings.partitions):
        for _ in range(20):
            producer.produce(topics.ingest_raw, b"x", partition=p)
    assert producer.flush(30) == 0
    admin = AdminClient(client_config(settings))
    doomed = [TopicPartition(topics.ingest_raw, p, EARLIEST) for p in range(settings.partitions)]
    for future in admin.delete_records(doomed).values():
        future.result(timeout=30)


def _earliest(settings: Any, topics: TopicNames) -> set[int]:
    consumer = Consumer({**client_config(settings), "group.id": f"probe-{uuid.uuid4()}"})
    try:
        return {consumer.get_watermark_offsets(TopicPartition(topics.ingest_raw, p), 10)[0]
                for p in range(settings.partitions)}  # fmt: skip
    finally:
        consumer.close()


def _older_version(tenant: str, event_id: str, offset: int, partition: int) -> Any:
    record = {
        "tenant": tenant, "family": "native", "event_id": event_id, "type": "t", "source": "s",
        "subject": None, "time": datetime(2024, 1, 1, tzinfo=UTC), "data_json": "{}",
        "received_at": datetime(2024, 1, 1, tzinfo=UTC), "version": version_of(offset, 0),
    }  # fmt: skip
    key = Identity(tenant, "native", event_id).key()
    return event_record(Msg(Record(key, encode("CanonicalEvent", record), [], partition)))  # type: ignore[arg-type]


def test_only_records_nothing_can_undo_are_pruned(kafka_bootstrap: str, database_url: str) -> None:
    settings = make_settings(kafka_bootstrap, database_url)
    topics = TopicNames.for_prefix(settings.topic_prefix)
    ensure_topics(settings)
    _advance_ingest_raw(settings, topics)
    assert _earliest(settings, topics) == {EARLIEST}
    tenant = f"prune-{uuid.uuid4().hex[:8]}"
    long_ago = datetime.now(UTC) - timedelta(days=40)
    deletions = {  # identity → (version's ingest.raw offset, deleted at)
        "gone-old": (5, long_ago),  # below the earliest offset and older than every retention
        "kept-offset": (50, long_ago),  # ingest.raw may still hold an older version
        "kept-recent": (5, datetime.now(UTC)),  # events.dlq may still hold a dead letter
    }
    filters = {"f-gone": (0, 5), "f-kept": (0, 15), "f-other-partition": (1, 5)}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for event_id, (offset, at) in deletions.items():
            conn.execute(
                "INSERT INTO event_deletions (tenant, family, event_id, version, deleted_at)"
                " VALUES (%s, 'native', %s, %s, %s)",
                (tenant, event_id, version_of(offset, 0), at),
            )
        for deletion_id, (partition, offset) in filters.items():
            conn.execute(
                "INSERT INTO filter_deletions (tenant, family, deletion_id, kafka_partition,"
                " version, time_to, requested_at, applied_at)"
                " VALUES (%s, 'native', %s, %s, %s, now(), %s, %s)",
                (tenant, deletion_id, partition, version_of(offset, 0), long_ago, long_ago),
            )

    async def run() -> dict[str, int]:
        # as the API's role: the runner calls the functions, never touches the tables
        pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False,
                                   kwargs={"autocommit": True},
                                   configure=assume_role("sluice_api"))  # fmt: skip
        await pool.open()
        try:
            return await prune_now(pool, settings, datetime.now(UTC))
        finally:
            await pool.close()

    removed = asyncio.run(run())  # every tenant's: other tests' records may go too
    assert removed["event_deletions"] >= 1 and removed["filter_deletions"] >= 2
    with psycopg.connect(database_url) as conn:
        ids = conn.execute("SELECT event_id FROM event_deletions WHERE tenant = %s", (tenant,))
        left = {r[0] for r in ids.fetchall()}
        rows = conn.execute("SELECT deletion_id FROM filter_deletions WHERE tenant = %s", (tenant,))
        kept_filters = {r[0] for r in rows.fetchall()}
        assert left == {"kept-offset", "kept-recent"} and kept_filters == {"f-kept"}

        # what Kafka can still present stays out: an older version of a kept identity
        batch = SinkBatch()
        batch.add(_older_version(tenant, "kept-offset", 40, 0))
        batch.add(_older_version(tenant, "kept-recent", 3, 0))
        write_batch(conn, batch, lambda _backs: None)
        stored = conn.execute("SELECT count(*) FROM events WHERE tenant = %s", (tenant,))
        assert stored.fetchone() == (0,)
    # and the pruned one's older versions are nowhere to be read again: ingest.raw starts later
    assert min(_earliest(settings, topics)) > 5


def _api(stack: ProcessStack, key: str, method: str, path: str) -> Answer:
    return call(method, f"{stack.base_url}{path}", headers={"X-API-Key": key})


RECEIPT_SCOPES = ["events:write", "events:read", "events:delete", "deadletters:read"]
DAYS_AGO_40 = "now() - interval '40 days'"


def _receipt(conn: psycopg.Connection[Any], tenant: str, kind: str, expected: int, steps: int,
             age: str) -> str:  # fmt: skip
    """A receipt requested `age` ago with `steps` of `expected` applied then."""
    deletion_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO deletions (deletion_id, tenant, family, kind, target, expected,"
        f" requested_at) VALUES (%s, %s, 'native', %s, %s::jsonb, %s, {age})",
        (deletion_id, tenant, kind, '{"ids": ["x"]}' if kind == "ids" else "{}", expected),
    )
    for unit in range(steps):
        conn.execute(
            "INSERT INTO deletion_steps (deletion_id, unit, tenant, applied_at)"
            f" VALUES (%s, %s, %s, {age})", (deletion_id, f"partition:{unit}", tenant),
        )  # fmt: skip
    return deletion_id


def _job(conn: psycopg.Connection[Any], tenant: str, state: str, age: str) -> str:
    job_id = str(uuid.uuid4())
    finished = age if state in ("done", "failed") else "NULL"
    conn.execute(
        "INSERT INTO replay_jobs (job_id, tenant, filter, state, created_at, heartbeat_at,"
        f" finished_at) VALUES (%s, %s, '{{}}'::jsonb, %s, {age}, {age}, {finished})",
        (job_id, tenant, state),
    )
    return job_id


def _run_record(conn: psycopg.Connection[Any], tenant: str, state: str, age: str) -> str:
    run_id = str(uuid.uuid4())
    finished = age if state != "running" else "NULL"
    conn.execute(
        "INSERT INTO retention_runs (tenant, run_id, state, started_at, finished_at)"
        f" VALUES (%s, %s, %s, {age}, {finished})", (tenant, run_id, state),
    )  # fmt: skip
    return run_id


def _prune_as_runner(stack: ProcessStack, database_url: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False,
                                   kwargs={"autocommit": True},
                                   configure=assume_role("sluice_api"))  # fmt: skip
        await pool.open()
        try:
            return await prune_now(pool, stack.settings, datetime.now(UTC))
        finally:
            await pool.close()

    return asyncio.run(run())


def _left(database_url: str, table: str, column: str, tenant: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"SELECT {column}::text FROM {table} WHERE tenant = %s", (tenant,))
        return {r[0] for r in rows.fetchall()}


def test_finished_receipts_jobs_and_runs_go_when_they_cannot_matter(
    stack: ProcessStack, database_url: str, new_key: Callable[..., str]
) -> None:
    """Past the horizon (the topics' longest retention + a day, here 31 days) and
    `SLUICE_RECEIPTS_KEEP_DAYS` (30): finished receipts no deletion record names, finished
    jobs and runs go, and the API answers 404 for them; recent ones, pending receipts,
    receipts a record still names and running jobs and runs stay."""
    tenant = f"prune-{uuid.uuid4().hex[:8]}"
    key = new_key(tenant, RECEIPT_SCOPES)
    recent = "now() - interval '2 days'"
    with psycopg.connect(database_url, autocommit=True) as conn:
        old_done = _receipt(conn, tenant, "filter", 2, 2, DAYS_AGO_40)
        old_pending = _receipt(conn, tenant, "filter", 2, 1, DAYS_AGO_40)
        recent_done = _receipt(conn, tenant, "filter", 1, 1, recent)
        guarded_filter = _receipt(conn, tenant, "filter", 1, 1, DAYS_AGO_40)
        conn.execute(  # a record ingest.raw may still undo (its offset is past the earliest)
            "INSERT INTO filter_deletions (tenant, family, deletion_id, kafka_partition,"
            " version, requested_at, applied_at) VALUES (%s, 'native', %s, 0, %s,"
            f" {DAYS_AGO_40}, {DAYS_AGO_40})", (tenant, guarded_filter, version_of(10**9, 0)),
        )  # fmt: skip
        jobs = {state: _job(conn, tenant, state, DAYS_AGO_40) for state in
                ("done", "failed", "running", "queued")}  # fmt: skip
        recent_job = _job(conn, tenant, "done", recent)
        runs = {state: _run_record(conn, tenant, state, DAYS_AGO_40) for state in
                ("done", "failed", "running")}  # fmt: skip
        recent_run = _run_record(conn, tenant, "done", recent)

    # a real delete by id, applied by the sink, then aged: its record still names it
    deleted = _api(stack, key, "DELETE", "/v1/events/prune-me").json()["deletion_id"]
    path = f"/v1/deletions/{deleted}"
    eventually(lambda: _api(stack, key, "GET", path).json()["status"] == "finished")
    assert _api(stack, key, "GET", f"/v1/deletions/{old_done}").status == 200
    assert _api(stack, key, "GET", f"/v1/replay-jobs/{jobs['done']}").status == 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"UPDATE deletions SET requested_at = {DAYS_AGO_40}"
                     " WHERE tenant = %s AND deletion_id = %s", (tenant, deleted))  # fmt: skip
        conn.execute(f"UPDATE deletion_steps SET applied_at = {DAYS_AGO_40}"
                     " WHERE tenant = %s AND deletion_id = %s", (tenant, deleted))  # fmt: skip

    removed = _prune_as_runner(stack, database_url)  # every tenant's: others' may go too
    assert removed["receipts"] >= 1 and removed["replay_jobs"] >= 2
    assert removed["retention_runs"] >= 2
    kept = {old_pending, recent_done, guarded_filter, deleted}
    assert _left(database_url, "deletions", "deletion_id", tenant) == kept
    assert _left(database_url, "deletion_steps", "deletion_id", tenant) == kept
    assert _left(database_url, "replay_jobs", "job_id", tenant) == {
        jobs["running"], jobs["queued"], recent_job}  # fmt: skip
    assert _left(database_url, "retention_runs", "run_id", tenant) == {runs["running"],
                                                                       recent_run}  # fmt: skip
    gone = _api(stack, key, "GET", f"/v1/deletions/{old_done}")
    assert (gone.status, gone.json()["error"]["code"]) == (404, "not_found"), gone.body
    gone_job = _api(stack, key, "GET", f"/v1/replay-jobs/{jobs['done']}")
    assert (gone_job.status, gone_job.json()["error"]["code"]) == (404, "not_found")
    assert _api(stack, key, "GET", path).json()["status"] == "finished"

    # once the delete's own record is pruned, its receipt goes at the next pass
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM event_deletions WHERE tenant = %s AND deletion_id = %s",
                     (tenant, deleted))  # fmt: skip
    _prune_as_runner(stack, database_url)
    assert deleted not in _left(database_url, "deletions", "deletion_id", tenant)
    assert _api(stack, key, "GET", path).status == 404
