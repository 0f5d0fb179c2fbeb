"""The sink's loop: lanes, each its own consumer of the group (its own partitions), its
own connection and commits; a poll's offsets are committed only once it is durable."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from runtime.kafka import producer_config
from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from schemas.codec import encode
from schemas.identity import Identity, partition_for
from schemas.topics import TopicNames
from sinks.batch import SinkBatch
from sinks.consumer import POLL_CHUNK, Sink, _SideConnection, consumer_config, take_poll
from sinks.rows import EventRow
from sinks.writer import WriteResult, write_events
from tests.conftest import eventually, make_settings

T0 = datetime(2024, 5, 1, tzinfo=UTC)
TOPICS = TopicNames.for_prefix("")


def _message(topic: str, partition: int, offset: int) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, value=b"")


class _Polled:
    """librdkafka's side of `take_poll`: hands out `queued` as `consume` would (at most the
    number asked for; fewer only once nothing more is queued) and records each request."""

    def __init__(self, queued: list[Message]) -> None:
        self.queued = queued
        self.asked: list[int] = []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.asked.append(num_messages)
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def _covered(batch: SinkBatch | None) -> list[tuple[str, int, int]]:
    assert batch is not None
    return sorted((tp.topic, tp.partition, tp.offset) for tp in batch.offsets())


def test_a_poll_covers_the_next_offset_of_each_partition_it_took() -> None:
    polled = [_message("events", p, o) for o, p in enumerate([0, 1, 2, 3, 1, 0, 2])]
    polled.append(_message("events.dlq", 1, 0))
    batch = take_poll(_Polled(polled), 100, 0.0, TOPICS)  # type: ignore[arg-type]
    assert _covered(batch) == [
        ("events", 0, 6), ("events", 1, 5), ("events", 2, 7), ("events", 3, 4),
        ("events.dlq", 1, 1),
    ]  # fmt: skip
    assert batch is not None and batch.undecodable == 8  # empty values: skipped, still covered
    assert take_poll(_Polled([]), 100, 0.0, TOPICS) is None  # type: ignore[arg-type]


def test_a_poll_is_taken_in_chunks_and_stops_at_its_size() -> None:
    queued = [_message("events", n % 4, n // 4) for n in range(2 * POLL_CHUNK + 10)]
    source = _Polled(queued)
    batch = take_poll(source, 2 * POLL_CHUNK + 5, 0.0, TOPICS)  # type: ignore[arg-type]
    assert source.asked == [POLL_CHUNK, POLL_CHUNK, 5]  # never the whole poll at once
    assert batch is not None and batch.undecodable == 2 * POLL_CHUNK + 5
    assert len(source.queued) == 5  # the rest waits for the next poll
    short = _Polled(queued[: POLL_CHUNK + 3])
    take_poll(short, 10 * POLL_CHUNK, 0.0, TOPICS)  # type: ignore[arg-type]
    assert short.asked == [POLL_CHUNK, POLL_CHUNK]  # a short chunk past the wait ends the poll


class _Trickle:
    """librdkafka's side of `take_poll` at a low rate: a message becomes ready every `every`
    seconds from `after` on; `consume` hands out at most the number asked for and, with fewer
    ready, waits out its timeout first."""

    def __init__(self, every: float, after: float = 0.0) -> None:
        self.began = time.monotonic() + after
        self.every = every
        self.handed = 0

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        time.sleep(timeout)
        ready = max(0, int((time.monotonic() - self.began) / self.every) + 1)
        out = [_message("events", 0, n) for n in range(self.handed, ready)][:num_messages]
        self.handed += len(out)
        return out


def _timed_poll(source: _Trickle, **kwargs: Any) -> tuple[float, SinkBatch | None]:
    began = time.monotonic()
    batch = take_poll(source, 10_000, 30.0, TOPICS, **kwargs)  # type: ignore[arg-type]
    return time.monotonic() - began, batch


def test_a_poll_ends_once_it_holds_messages_and_its_writer_is_idle() -> None:
    seconds, batch = _timed_poll(_Trickle(every=0.001), idle=lambda: True)
    assert seconds < 5.0  # not the 30 s wait
    assert batch is not None and batch.undecodable >= 1


def test_a_poll_gathers_while_its_writer_is_busy() -> None:
    source = _Trickle(every=0.001)
    free_at = time.monotonic() + 0.3
    seconds, batch = _timed_poll(source, idle=lambda: time.monotonic() >= free_at)
    assert 0.3 <= seconds < 5.0
    assert batch is not None and batch.undecodable == source.handed > 100


def test_a_poll_waits_its_least_and_for_a_message_before_it_ends() -> None:
    seconds, batch = _timed_poll(_Trickle(every=0.001), idle=lambda: True, least=0.3)
    assert 0.3 <= seconds < 5.0
    seconds, batch = _timed_poll(_Trickle(every=0.001, after=0.3), idle=lambda: True)
    assert 0.3 <= seconds < 5.0  # an idle writer ends no poll that holds nothing
    assert batch is not None and batch.undecodable >= 1


def test_without_idle_a_poll_waits_its_whole_wait() -> None:
    began = time.monotonic()
    batch = take_poll(_Trickle(every=0.001), 10_000, 0.3, TOPICS)  # type: ignore[arg-type]
    assert time.monotonic() - began >= 0.3
    assert batch is not None and batch.undecodable > 100


def test_a_sink_refuses_fewer_than_one_writer() -> None:
    with pytest.raises(ValueError, match="SLUICE_SINK_WRITERS"):
        Sink(Settings(sink_writers=0))


def _id_in(tenant: str, partition: int, partitions: int) -> str:
    for n in range(10_000):
        event_id = f"e-{n}"
        if partition_for(Identity(tenant, "native", event_id).key(), partitions) == partition:
            return event_id
    raise AssertionError("no id found")


def _row(tenant: str, event_id: str, partition: int, version: int) -> EventRow:
    return EventRow(tenant, "native", event_id, "t", "s", None, T0, f'{{"v": {version}}}', T0,
                    version, partition)  # fmt: skip


def _produce(settings: Settings, row: EventRow) -> int:
    """`row` on `events` as the stream writes it; its offset."""
    record = {
        "tenant": row.tenant, "family": row.family, "event_id": row.event_id, "type": row.type,
        "source": row.source, "subject": None, "time": row.time, "data_json": row.data_json,
        "received_at": row.received_at, "version": row.version,
    }  # fmt: skip
    offsets: list[int | None] = []
    producer = Producer(producer_config(settings))
    producer.produce(
        TopicNames.for_prefix(settings.topic_prefix).events, encode("CanonicalEvent", record),
        Identity(row.tenant, row.family, row.event_id).key(), partition=int(row.partition or 0),
        on_delivery=lambda err, msg: offsets.append(msg.offset()),
    )  # fmt: skip
    assert producer.flush(30) == 0
    [offset] = offsets
    assert offset is not None
    return offset


def _committed(settings: Settings, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": settings.sink_group})  # fmt: skip
    try:
        topic = TopicNames.for_prefix(settings.topic_prefix).events
        [tp] = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


@pytest.fixture
def two_writer_settings(kafka_bootstrap: str, database_url: str) -> Iterator[Settings]:
    settings = replace(make_settings(kafka_bootstrap, database_url), sink_writers=2)
    ensure_topics(settings)
    yield settings


@contextlib.contextmanager
def _stored_and_locked(
    database_url: str, tenant: str, event_id: str, partition: int
) -> Iterator[psycopg.Connection[Any]]:
    """Version 1 << 20 of `event_id` stored, and its row locked by the connection given
    (until it rolls back, at the latest on leaving)."""
    with psycopg.connect(database_url) as conn, conn.transaction():
        write_events(conn, [_row(tenant, event_id, partition, 1 << 20)], [])
    with psycopg.connect(database_url) as lock:
        lock.execute(
            "SELECT 1 FROM events WHERE tenant = %s AND event_id = %s FOR UPDATE",
            (tenant, event_id),
        )
        try:
            yield lock
        finally:
            lock.rollback()


@contextlib.contextmanager
def _running(sink: Sink) -> Iterator[None]:
    """`sink` running on a thread of its own; stopped, and seen to stop, on leaving."""
    thread = threading.Thread(target=sink.run, name="test-sink", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sink.stop()
        thread.join(30)
    assert not thread.is_alive()


def _version(conn: psycopg.Connection[Any], tenant: str, event_id: str) -> int | None:
    found = conn.execute(
        "SELECT version FROM events WHERE tenant = %s AND event_id = %s", (tenant, event_id)
    ).fetchone()
    return None if found is None else int(found[0])


def _lanes_assigned(settings: Settings, lanes: int) -> None:
    """Wait until the sink's group has `lanes` members, each with partitions of `events`:
    a lane that joined first holds every partition until the others join."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    events = TopicNames.for_prefix(settings.topic_prefix).events

    def split() -> bool:
        try:
            group = admin.describe_consumer_groups([settings.sink_group])[settings.sink_group]
            members = group.result(10).members
        except KafkaException:
            return False
        return len(members) == lanes and all(
            any(tp.topic == events for tp in m.assignment.topic_partitions) for m in members
        )

    eventually(split, timeout=60)


class _Lane:
    """librdkafka's side of one lane: poll k of `polls` arrives once k polls were stored,
    and every commit is recorded with whether it waited for the broker's answer and how
    many polls were stored at that moment."""

    def __init__(self, polls: list[list[Message]], stored: list[int]) -> None:
        self.polls, self.stored, self.handed = polls, stored, 0
        self.commits: list[tuple[list[tuple[int, int]], bool, int]] = []
        self.written: list[weakref.ref[SinkBatch]] = []
        self.held = 0  # the most written polls still alive while the lane took another

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.held = max(self.held, sum(ref() is not None for ref in self.written))
        if self.handed < len(self.polls) and len(self.stored) >= self.handed:
            self.handed += 1
            return self.polls[self.handed - 1]
        time.sleep(timeout)
        return []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        at = sorted((tp.partition, tp.offset) for tp in offsets)
        self.commits.append((at, asynchronous, len(self.stored)))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("events", p) for p in (0, 1, 2)]

    def close(self) -> None:
        pass


@pytest.mark.integration
def test_a_lane_commits_each_poll_after_it_is_stored_and_waits_only_for_its_last_commit(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane does not wait for the broker's answer to each commit (it writes the next poll
    meanwhile), but a poll's offsets are never sent before its rows are stored, and a
    stopping lane's last commit, covering each partition it holds, waits for the answer.
    It lets a poll go once it is stored: it holds two at most."""
    # The polls' messages are undecodable, and pytest keeps each log record of one, whose
    # exception's frames would hold the batch.
    monkeypatch.setattr(logging.getLogger("sinks.batch"), "disabled", True)
    polls = [[_message("events", 0, 0), _message("events", 1, 0)],
             [_message("events", 0, 1)], [_message("events", 0, 2)]]  # fmt: skip
    stored: list[int] = []
    lane = _Lane(polls, stored)
    sink = Sink(Settings(database_url=database_url))

    def write(conn: Any, batch: SinkBatch, first: Any) -> tuple[Any, WriteResult, float]:
        stored.append(batch.undecodable)
        lane.written.append(weakref.ref(batch))
        return conn, WriteResult(), time.time()

    sink._write_until_durable = write  # type: ignore[method-assign,assignment]
    thread = threading.Thread(target=sink._lane, args=(0, lane), daemon=True)
    thread.start()
    eventually(lambda: len(lane.commits) == 3, timeout=30)
    sink.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert lane.commits == [
        ([(0, 1), (1, 1)], True, 1),  # each poll's own offsets, once it is stored
        ([(0, 2)], True, 2),
        ([(0, 3)], True, 3),
        ([(0, 3), (1, 1)], False, 3),  # the last: every partition, answered
    ]
    assert lane.held == 1  # the poll being written; the one before it is let go


@pytest.mark.integration
def test_lanes_apply_partitions_apart_and_offsets_wait_for_the_rows(
    two_writer_settings: Settings, database_url: str
) -> None:
    """A partition whose rows PostgreSQL cannot apply yet (here: a row lock) holds back
    neither the other lane's partitions nor, wrongly, its own offsets. (Range assignment
    gives the first and the last partition to different lanes of two.)"""
    settings, tenant = two_writer_settings, f"cons-{uuid.uuid4().hex[:8]}"
    held = settings.partitions - 1
    free_id, held_id = (_id_in(tenant, p, settings.partitions) for p in (0, held))
    with (
        _stored_and_locked(database_url, tenant, held_id, held) as lock,
        _running(Sink(settings)),
        psycopg.connect(database_url, autocommit=True) as look,
    ):
        _lanes_assigned(settings, 2)
        _produce(settings, _row(tenant, free_id, 0, 1 << 20))
        held_offset = _produce(settings, _row(tenant, held_id, held, 2 << 20))
        # The free partition's lane commits while the other one waits on the lock.
        eventually(lambda: _version(look, tenant, free_id) == 1 << 20, timeout=60)
        time.sleep(1.0)  # room for a premature commit to happen, if it would
        assert _version(look, tenant, held_id) == 1 << 20
        assert _committed(settings, held) <= held_offset  # not past the unstored row
        lock.rollback()
        eventually(lambda: _version(look, tenant, held_id) == 2 << 20, timeout=60)
        eventually(lambda: _committed(settings, held) == held_offset + 1, timeout=30)


@pytest.mark.integration
def test_one_stuck_lane_stalls_the_sink_while_the_others_commit(
    two_writer_settings: Settings, database_url: str
) -> None:
    """A lane whose write outlasts the watchdog's window holds the other lanes' commits
    back from counting as progress, so the watchdog restarts the sink as it would a sink
    of one lane stuck so."""
    settings = replace(two_writer_settings, watchdog_stall_seconds=3.0)
    tenant = f"stuck-{uuid.uuid4().hex[:8]}"
    held = settings.partitions - 1
    free_id, held_id = (_id_in(tenant, p, settings.partitions) for p in (0, held))
    sink = Sink(settings)
    stalls: list[str] = []
    sink.monitor.watchdog._on_stall = stalls.append  # instead of exiting the process
    with _stored_and_locked(database_url, tenant, held_id, held) as lock, _running(sink):
        _lanes_assigned(settings, 2)
        _produce(settings, _row(tenant, held_id, held, 2 << 20))
        try:
            version = 1 << 20
            deadline = time.monotonic() + 45
            while not stalls and time.monotonic() < deadline:  # the free lane commits
                version += 1
                _produce(settings, _row(tenant, free_id, 0, version))
                time.sleep(0.5)
        finally:
            lock.rollback()  # the stuck lane may finish now, and the sink stop
        assert stalls == ["sink"]
        with psycopg.connect(database_url, autocommit=True) as look:
            stored = _version(look, tenant, free_id)
        assert stored is not None and stored > 1 << 20  # it did commit meanwhile


@pytest.mark.integration
def test_history_is_pruned_by_whichever_lane_commits(
    two_writer_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the last partition's lane has rows here (range assignment, members ordered by
    their client ids, gives it the second lane): pruning must not wait for another lane."""
    pruned: list[float] = []

    def prune(conn: psycopg.Connection[Any], retention: float, rows: int) -> int:
        pruned.append(retention)
        return 0

    monkeypatch.setattr("sinks.consumer.HISTORY_PRUNE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr("sinks.consumer.prune_history", prune)
    settings, tenant = two_writer_settings, f"prune-{uuid.uuid4().hex[:8]}"
    last = settings.partitions - 1
    event_id = _id_in(tenant, last, settings.partitions)
    with _running(Sink(settings)), psycopg.connect(database_url, autocommit=True) as look:
        _lanes_assigned(settings, 2)
        _produce(settings, _row(tenant, event_id, last, 1 << 20))
        eventually(lambda: _version(look, tenant, event_id) == 1 << 20, timeout=60)
        eventually(lambda: pruned, timeout=30)
    assert pruned[0] == settings.history_retention_seconds


@pytest.mark.integration
def test_a_failed_lane_stops_the_others_and_its_error_is_raised(
    two_writer_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[int] = []

    def lane(self: Sink, index: int, consumer: Consumer) -> None:
        try:
            if index == 1:
                raise RuntimeError("lane 1 broke")
            assert self._stopping.wait(30)  # the failure stops this lane too
            stopped.append(index)
        finally:
            consumer.close()

    monkeypatch.setattr(Sink, "_lane", lane)
    with pytest.raises(RuntimeError, match="lane 1 broke"):
        Sink(two_writer_settings).run()
    assert stopped == [0]


def test_the_sink_fetches_ahead_only_what_it_is_allowed() -> None:
    # librdkafka's own default (64 MB) let a sink behind a backlog hold ~55 MB more.
    assert consumer_config(Settings())["queued.max.messages.kbytes"] == 16_384
    config = consumer_config(Settings(sink_prefetch_kbytes=4096))
    assert config["queued.max.messages.kbytes"] == 4096
    lanes = [consumer_config(Settings(sink_prefetch_kbytes=4096), n, 2) for n in range(2)]
    assert [c["queued.max.messages.kbytes"] for c in lanes] == [2048, 2048]  # shared
    assert lanes[0]["client.id"] != lanes[1]["client.id"]


@pytest.mark.integration
def test_a_lane_is_assigned_the_same_partition_numbers_of_events_and_dead_letters(
    kafka_bootstrap: str, database_url: str
) -> None:
    """An identity's versions, deletes and dead letters must reach one lane, in order. With
    three partitions round-robin assignment would split them; the lanes' range does not."""
    settings = replace(make_settings(kafka_bootstrap, database_url), partitions=3)
    ensure_topics(settings)
    topics = TopicNames.for_prefix(settings.topic_prefix)
    lanes = [Consumer(consumer_config(settings, n, 2)) for n in range(2)]
    try:
        for consumer in lanes:
            consumer.subscribe([topics.events, topics.dlq])

        def assigned() -> list[dict[str, set[int]]]:
            for consumer in lanes:
                consumer.poll(0.2)
            found: list[dict[str, set[int]]] = []
            for consumer in lanes:
                by_topic: dict[str, set[int]] = {topics.events: set(), topics.dlq: set()}
                for tp in consumer.assignment():
                    by_topic[tp.topic].add(tp.partition)
                found.append(by_topic)
            return found

        eventually(lambda: sum(len(a[topics.events]) for a in assigned()) == 3
                   and all(a[topics.events] for a in assigned()), timeout=60)  # fmt: skip
        final = assigned()
        for lane in final:
            assert lane[topics.events] == lane[topics.dlq]
        assert final[0][topics.events].isdisjoint(final[1][topics.events])
    finally:
        for consumer in lanes:
            consumer.close()


def test_one_fetch_may_bring_a_partition_s_share_of_the_prefetch() -> None:
    """So the prefetch refills in one round trip (1 MB fetches kept the sink waiting),
    and never less than librdkafka's own 1 MB."""
    config = consumer_config(Settings(sink_prefetch_kbytes=16_384, partitions=4))
    assert config["max.partition.fetch.bytes"] == 4 << 20
    assert (
        consumer_config(Settings(sink_prefetch_kbytes=1024, partitions=12))[
            "max.partition.fetch.bytes"
        ]
        == 1 << 20
    )


@pytest.mark.integration
def test_a_lane_s_side_connection_does_not_wait_for_the_wal(database_url: str) -> None:
    side = _SideConnection(database_url)
    conn = side.get()
    assert conn is not None and side.get() is conn
    assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
    side.close()


def test_a_lane_s_side_connection_is_retried_only_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tries: list[str] = []

    def refuse(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
        tries.append(url)
        raise psycopg.OperationalError("refused")

    monkeypatch.setattr("sinks.consumer.psycopg.connect", refuse)
    side = _SideConnection("postgresql://127.0.0.1:1/none")
    assert side.get() is None and side.get() is None
    assert len(tries) == 1  # not once per poll while PostgreSQL is away
    monkeypatch.setattr(_SideConnection, "RETRY_SECONDS", 0.0)
    assert side.get() is None and len(tries) == 2
