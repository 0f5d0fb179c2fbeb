"""A sink batch held once: segments cut at deletes by filter, the offsets it covers, and
its one transaction, whose write-backs Kafka acknowledges before the commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import Message, TopicPartition

from runtime.kafka import ProduceFailed
from schemas.codec import encode
from schemas.deletes import VERSION_HEADER, DeleteFilter, filter_key
from schemas.identity import Identity
from schemas.topics import TopicNames
from sinks.batch import SinkBatch, write_batch
from sinks.republish import WriteBack
from sinks.rows import EventRow, FilterRow, TombstoneRow

T0 = datetime(2024, 5, 1, tzinfo=UTC)
TOPICS = TopicNames.for_prefix("")


def _row(tenant: str, event_id: str, version: int, partition: int = 0) -> EventRow:
    return EventRow(tenant, "native", event_id, "t", "s", None, T0, '{"v": 1}', T0, version,
                    partition)  # fmt: skip


def _filter(tenant: str, version: int, partition: int = 0) -> FilterRow:
    return FilterRow(tenant, "native", f"f-{uuid.uuid4()}", partition, version, DeleteFilter(), T0)


def _event_message(row: EventRow, offset: int) -> Message:
    record = {
        "tenant": row.tenant, "family": row.family, "event_id": row.event_id, "type": row.type,
        "source": row.source, "subject": None, "time": row.time, "data_json": row.data_json,
        "received_at": row.received_at, "version": row.version,
    }  # fmt: skip
    key = Identity(row.tenant, row.family, row.event_id).key()
    return Message(topic=TOPICS.events, partition=row.partition, offset=offset, key=key,
                   value=encode("CanonicalEvent", record))  # fmt: skip


def test_a_record_after_a_delete_by_filter_starts_a_segment() -> None:
    batch = SinkBatch()
    first, second = _filter("t", 3 << 20), _filter("t", 3 << 20)
    letter = {"dead_letter_id": str(uuid.uuid4())}
    for item in (_row("t", "a", 1 << 20), TombstoneRow("t", "native", "b", 2 << 20), first,
                 second, _row("t", "a", 4 << 20), letter):  # fmt: skip
        batch.add(item)
    shape = [(len(s.upserts), len(s.tombstones), s.filters, s.dead_letters) for s in batch.segments]
    assert shape == [(1, 1, [first, second], []), (1, 0, [], [letter])]
    assert len(batch) == 6
    assert [r.version for r in batch.upserts()] == [1 << 20, 4 << 20]
    assert batch.filters() == [first, second] and batch.dead_letters() == [letter]


def test_a_batch_covers_one_past_the_last_offset_of_each_partition_undecodable_too() -> None:
    polled = [
        _event_message(_row("t", "a", 1 << 20, 0), 7),
        _event_message(_row("t", "b", 2 << 20, 1), 3),
        Message(topic=TOPICS.events, partition=1, offset=4, key=b"x", value=b"not avro"),
        _event_message(_row("t", "a", 3 << 20, 0), 8),
        Message(topic=TOPICS.dlq, partition=0, offset=11, value=b"\x00"),  # undecodable too
    ]
    batch = SinkBatch.of(polled, TOPICS)
    assert sorted(batch.offsets(), key=lambda tp: (tp.topic, tp.partition)) == [
        TopicPartition(TOPICS.events, 0, 9),
        TopicPartition(TOPICS.events, 1, 5),
        TopicPartition(TOPICS.dlq, 0, 12),
    ]
    assert batch.undecodable == 2
    assert [(r.event_id, r.version) for r in batch.upserts()] == [
        ("a", 1 << 20), ("b", 2 << 20), ("a", 3 << 20)
    ]  # fmt: skip


def test_a_tombstone_message_becomes_a_tombstone_of_its_segment() -> None:
    key = Identity("t", "native", "gone").key()
    msg = Message(topic=TOPICS.events, partition=2, offset=0, key=key, value=None,
                  headers=[(VERSION_HEADER, b"5")])  # fmt: skip
    batch = SinkBatch.of([msg], TOPICS)
    assert batch.tombstones() == [TombstoneRow("t", "native", "gone", 5, 2)]
    assert batch.offsets() == [TopicPartition(TOPICS.events, 2, 1)]


def _stored(conn: psycopg.Connection[Any], tenant: str) -> list[str]:
    rows = conn.execute("SELECT event_id FROM events WHERE tenant = %s", (tenant,)).fetchall()
    return sorted(r[0] for r in rows)


@pytest.mark.integration
def test_write_backs_are_acknowledged_before_the_commit_and_a_refusal_commits_nothing(
    database_url: str,
) -> None:
    tenant = f"batch-{uuid.uuid4().hex[:8]}"
    batch = SinkBatch()
    for item in (_row(tenant, "a", 1 << 20), _row(tenant, "b", 2 << 20),
                 _filter(tenant, 3 << 20), _row(tenant, "c", 4 << 20)):  # fmt: skip
        batch.add(item)
    seen: list[list[str]] = []

    def refuse(records: Sequence[WriteBack]) -> None:
        with psycopg.connect(database_url) as look:
            seen.append(_stored(look, tenant))  # what another session sees meanwhile
        raise ProduceFailed("not acknowledged")

    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(ProduceFailed):
            write_batch(conn, batch, refuse)
        assert seen == [[]] and _stored(conn, tenant) == []  # nothing committed
        sent: list[WriteBack] = []
        result = write_batch(conn, batch, sent.extend)
        assert _stored(conn, tenant) == ["c"]  # the filter removed what preceded it
    assert sorted(r.event_id for r in result.removed_by_filters) == ["a", "b"]
    [flt] = batch.filters()
    assert sorted(key for _, key, _, _ in sent) == sorted([
        Identity(tenant, "native", "a").key(), Identity(tenant, "native", "b").key(),
        filter_key(flt.deletion_id),
    ])  # fmt: skip
