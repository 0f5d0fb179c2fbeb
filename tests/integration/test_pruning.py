"""Pruning deletion records never lets a deleted event come back (issue 20), on real Kafka
and PostgreSQL: a record goes only when `ingest.raw` no longer holds anything older than it
(its earliest offsets moved past, as retention moves them) and it is older than every
topic's retention; the records kept still refuse the older versions Kafka can present."""

from __future__ import annotations

import asyncio
import uuid
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
from store.tenancy import assume_role
from tests.conftest import make_settings
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
