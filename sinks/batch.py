"""A sink batch, held once, and the one transaction that stores it.

A `SinkBatch` is one writer's share of a poll, built as its messages are taken:
its records cut into segments at deletes by filter, and what the offset commit
needs (the next offset of each partition it covers). `write_batch` runs its
whole transaction: every segment's writes, the write-backs to `events`, commit.

Why segments: within a stretch of records without a delete by filter, order
does not matter: versions decide (newest wins, deletes by id are kept). A
delete by filter, though, removes what *matched when it was accepted*: if a
batch held an old matching version, the filter, and a newer version, collapsing
the two versions first would hide from the filter that the identity matched,
and its dead letters would survive. So a batch is applied as segments, each
ending with the filters that follow its records, in consumption order (which is
partition order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import psycopg
from confluent_kafka import Message, TopicPartition

from schemas.codec import CodecError, decode
from schemas.history import REQUEST_HEADER
from schemas.topics import TopicNames
from sinks.history import record_envelopes
from sinks.records import event_record, message_header
from sinks.republish import WriteBack, write_back
from sinks.rows import FilterRow, TombstoneRow, Version
from sinks.unstorable import EnvelopeReader
from sinks.writer import (
    FirstWrites,
    WriteResult,
    apply_filters,
    write_dead_letters,
    write_events,
)

log = logging.getLogger(__name__)

Item: TypeAlias = "Version | TombstoneRow | FilterRow | dict[str, Any]"
"""A decoded record: a version, a tombstone, a delete by filter, or a dead letter (dict)."""

SendBack = Callable[[Sequence[WriteBack]], None]
"""Produces write-backs to `events`; returns once Kafka acknowledged them all, else raises
`ProduceFailed` (`sinks.republish.WriteBackProducer.send`)."""


@dataclass
class Segment:
    """Records up to and including one run of deletes by filter."""

    upserts: list[Version] = field(default_factory=list)
    tombstones: list[TombstoneRow] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    filters: list[FilterRow] = field(default_factory=list)


@dataclass
class SinkBatch:
    """The records of one writer's share of a poll, in segments, and the offsets they cover.

    Offsets count every message taken, an undecodable one too (it is skipped, logged
    and counted, never retried): committing them says "stored, or never storable".
    """

    segments: list[Segment] = field(default_factory=list)
    undecodable: int = 0
    _next_offsets: dict[tuple[str, int], int] = field(default_factory=dict, init=False)

    @classmethod
    def of(cls, messages: Sequence[Message], topics: TopicNames) -> SinkBatch:
        """The batch of `messages`, taken in their order."""
        batch = cls()
        for msg in messages:
            batch.take(msg, topics)
        return batch

    def take(self, msg: Message, topics: TopicNames) -> None:
        """Decode `msg` of `events` or `events.dlq` into the batch and cover its offset."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        try:
            if topic == topics.dlq:
                letter = decode(msg.value() or b"", "DeadLetter")[1]
                request = message_header(msg, REQUEST_HEADER)
                letter["request_id"] = request.decode("utf-8", "replace") if request else None
                self.add(letter)
            else:
                row = event_record(msg)
                if row is not None:
                    self.add(row)
        except (CodecError, ValueError) as exc:
            self.undecodable += 1
            log.error(
                "skipping undecodable message %s[%d]@%d: %s", topic, partition, offset, exc
            )  # fmt: skip
        if topic is not None and partition is not None and offset is not None:
            key = (topic, partition)
            if offset >= self._next_offsets.get(key, 0):
                self._next_offsets[key] = offset + 1

    def add(self, item: Item) -> None:
        """Append `item`; a record after a delete by filter starts a new segment."""
        if not self.segments or (self.segments[-1].filters and not isinstance(item, FilterRow)):
            self.segments.append(Segment())
        seg = self.segments[-1]
        if isinstance(item, TombstoneRow):
            seg.tombstones.append(item)
        elif isinstance(item, FilterRow):
            seg.filters.append(item)
        elif isinstance(item, dict):
            seg.dead_letters.append(item)
        else:
            seg.upserts.append(item)

    def offsets(self) -> list[TopicPartition]:
        """What to commit once the batch is stored: one past the last offset of each partition."""
        return [TopicPartition(t, p, o) for (t, p), o in self._next_offsets.items()]

    def upserts(self) -> list[Version]:
        return [row for seg in self.segments for row in seg.upserts]

    def tombstones(self) -> list[TombstoneRow]:
        return [row for seg in self.segments for row in seg.tombstones]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [letter for seg in self.segments for letter in seg.dead_letters]

    def filters(self) -> list[FilterRow]:
        return [row for seg in self.segments for row in seg.filters]

    def __len__(self) -> int:
        """Records to store (undecodable ones aside)."""
        return sum(
            len(s.upserts) + len(s.tombstones) + len(s.dead_letters) + len(s.filters)
            for s in self.segments
        )


def write_batch(
    conn: psycopg.Connection[Any],
    batch: SinkBatch,
    send_back: SendBack,
    *,
    originals: EnvelopeReader | None = None,
    first_writes: FirstWrites | None = None,
) -> WriteResult:
    """Store `batch` in one transaction on `conn` (in autocommit mode), and commit it.

    In order: for each segment, its deletes by id and versions (`write_events`: the
    versions are COPYed and upserted in a savepoint, so a row PostgreSQL refuses, or a
    plain insert meeting a stored identity, is undone alone and retried), its dead
    letters, then the deletes by filter that end it; then the write-backs to `events`
    (tombstones of what the filters removed, repairs of the sink's own records), which
    `send_back` has Kafka acknowledge *before* the commit, so a crash replays them rather
    than losing them. On any error nothing is committed: the caller retries the batch,
    and commits its offsets only after this returns. The envelopes the versions came from
    are recorded in the same transaction, one row each (`sinks.history`).

    `originals` and `first_writes` are `write_events`'s.
    """
    result = WriteResult()
    with conn.transaction():
        for seg in batch.segments:
            result.add(write_events(
                conn, seg.upserts, seg.tombstones, originals=originals, first_writes=first_writes
            ))  # fmt: skip
            write_dead_letters(conn, seg.dead_letters)
            result.add(apply_filters(conn, seg.filters))
        record_envelopes(conn, batch.upserts())
        send_back(write_back(conn, batch.upserts(), batch.tombstones(), batch.filters(), result))
    return result
