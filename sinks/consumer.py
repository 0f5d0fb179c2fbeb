"""The sink: consume `events` and `events.dlq`, write batches to PostgreSQL, then commit.

Offsets are committed only after the database transaction that covers them
has committed, so a crash anywhere redelivers (and the idempotent writes make
redelivery harmless). A database outage is retried with back-off on the same
batch; it never skips messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from runtime.kafka import ProduceFailed, client_config, producer_config
from runtime.settings import Settings
from schemas.topics import TopicNames
from sinks.batch import SinkBatch, write_batch
from sinks.bulk import binary_array_parameters
from sinks.history import prune_history
from sinks.ingest_reader import IngestRawReader
from sinks.republish import WriteBackProducer
from sinks.watchdog import SinkMonitor
from sinks.writer import FirstWrites, WriteResult
from store.figures import add_latency, bucket_start, prune_figures
from store.latency_bins import bin_of

log = logging.getLogger(__name__)

BATCH_WAIT_SECONDS = 0.05
"""Longest wait to fill a poll: `consume` returns at `sink_batch_size` messages per writer or
after this. Under load batches fill well before it; at low rates it bounds the latency the sink
adds (0.5 s here made half of the end-to-end p50 at half load)."""


HISTORY_PRUNE_EVERY_SECONDS = 60.0
HISTORY_PRUNE_ROWS = 50_000
"""At most this many expired history rows go per minute: a bounded statement between polls."""

_LOST_MEMBERSHIP = frozenset(
    {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS}
)
"""Commit errors after the group moved on without this member (e.g. Kafka was down longer
than the session timeout): the partitions may be someone else's now."""


def commit_durable(consumer: Consumer, offsets: list[TopicPartition] | None = None) -> None:
    """Commit offsets of rows already durable, retrying while the group coordinator moves.

    After a broker fails, its groups' coordinator answers "load in progress" or "not
    coordinator" for a few seconds; a sink that let that exception escape died there
    (fault suite, partition leader SIGKILLs). If the commit still fails (the partitions
    were revoked, say), it is skipped: the rows are stored, and redelivery from the older
    offset rewrites them harmlessly (idempotent writes).
    """
    delay = 0.2
    for attempt in range(1, 9):
        try:
            if offsets is None:
                consumer.commit(asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
            return
        except KafkaException as exc:
            log.warning("offset commit failed (attempt %d): %s", attempt, exc)
            if exc.args[0].code() in _LOST_MEMBERSHIP:
                break  # only a poll can rejoin the group; retrying here would block it
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    log.warning("offsets left uncommitted; their rows are stored and may be rewritten")


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        **client_config(settings),
        "group.id": settings.sink_group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "max.poll.interval.ms": 600_000,
        # A crashed sink's partitions move to a live one after this, not the default 45 s.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        # What librdkafka fetches ahead of the sink (its default is 64 MB): about one poll
        # of events, enough to keep a poll ready while the last one is written. A sink
        # behind a backlog otherwise held ~55 MB more than it needed (1.89x its memory
        # before a 10x burst, draining ~1.8M events afterwards).
        "queued.max.messages.kbytes": settings.sink_prefetch_kbytes,
        # What one fetch may bring of a partition (librdkafka's default is 1 MB): the
        # prefetch refills in one round trip to the broker instead of one per MB. With 1 MB
        # the sink waited on refills between polls, a quarter of its main thread's time.
        "max.partition.fetch.bytes": _fetch_bytes(settings),
        "client.id": "sluice-sink",
    }


def _fetch_bytes(settings: Settings) -> int:
    """A partition's share of the prefetch, at least librdkafka's default of 1 MB."""
    share = settings.sink_prefetch_kbytes * 1024 // max(settings.partitions, 1)
    return max(1 << 20, share)


POLL_CHUNK = 4096
"""Messages taken from librdkafka at a time while a poll fills. Each chunk is decoded into
its writers' batches before the next is taken, so a poll's raw messages are never held all
at once beside their rows: a 40,000-message poll held ~25 MB of them at the sink's peak,
while it drained a backlog."""


def take_poll(
    consumer: Consumer, size: int, wait: float, ways: int, topics: TopicNames
) -> list[SinkBatch]:
    """Up to `size` messages, taken within `wait` seconds, decoded into at most `ways` batches
    by partition number, each in poll order.

    An identity has the same partition number on `events` and `events.dlq`, so all of
    an identity's records (versions, deletes, dead letters) and a partition's copy of a
    delete by filter fall in one batch: batches can be written by separate transactions
    at once, and each keeps the order the single-writer sink relied on.
    """
    batches = [SinkBatch() for _ in range(ways)]
    deadline = time.monotonic() + wait
    taken = 0
    while taken < size:
        want = min(POLL_CHUNK, size - taken)
        chunk = consumer.consume(want, max(0.0, deadline - time.monotonic()))
        for msg in chunk:
            if msg.error() is None:
                batches[(msg.partition() or 0) % ways].take(msg, topics)
        taken += len(chunk)
        if len(chunk) < want:  # the wait is over: librdkafka had no more
            break
        del chunk
    return [batch for batch in batches if batch.offsets()]


@dataclass
class _Writing:
    """A poll's batches being written by the writer threads (one each, on its own
    connection); their offsets are committed when all of them are durable."""

    futures: list[Future[tuple[psycopg.Connection[Any], WriteResult]]]
    batches: list[SinkBatch]
    began: float


class Sink:
    """Runs the consume → write → commit loop until `stop()` is called."""

    def __init__(self, settings: Settings) -> None:
        if settings.sink_writers < 1:
            raise ValueError(f"SLUICE_SINK_WRITERS must be at least 1, not {settings.sink_writers}")
        self._settings = settings
        self._topics = TopicNames.for_prefix(settings.topic_prefix)
        self._stopping = threading.Event()
        self.rows_written = 0
        self.monitor = SinkMonitor(settings)
        self._write_backs = WriteBackProducer(producer_config(settings), self._topics.events)
        self._originals = IngestRawReader.from_settings(settings, self._topics.ingest_raw)
        self._pruned_at = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Consume, decode and write batches; commit each batch's offsets once it is durable.

        Pipelined: while PostgreSQL applies poll N (writer threads wait on it, without
        the GIL), this thread consumes and decodes poll N+1. Poll N's own offsets, not
        the consumer's position, are committed after its transactions, so nothing is
        committed before it is stored.

        Parallel: poll N is split by partition number (`take_poll`) into one batch per
        writer, each written in its own transaction on its own connection. PostgreSQL
        applies a batch in one backend, which costs more CPU per row than decoding it
        here; with `sink_writers` backends it is no longer the one busy core. The poll's
        offsets are committed once every one of its batches is durable.
        """
        consumer = Consumer(consumer_config(self._settings))
        consumer.subscribe([self._topics.events, self._topics.dlq])
        ways = self._settings.sink_writers
        # `sink_batch_size` bounds a transaction: a poll fills one per writer (20,000 per
        # writer against 10,000 made the sink 10-20 % faster in `make bench`).
        poll_size = self._settings.sink_batch_size * ways
        self._conns = [self._connect() for _ in range(ways)]
        first_writes = [FirstWrites() for _ in range(ways)]
        self.monitor.start()
        writing: _Writing | None = None
        try:
            with ThreadPoolExecutor(ways, thread_name_prefix="sink-write") as writers:
                while not self._stopping.is_set():
                    batches = take_poll(consumer, poll_size, BATCH_WAIT_SECONDS, ways, self._topics)
                    if writing is not None:
                        self._finish(consumer, writing)
                        writing = None
                    if batches:
                        # Poll N-1 is finished: each connection serves one batch at a time.
                        futures = [
                            writers.submit(
                                self._write_until_durable, self._conns[i], batch, first_writes[i]
                            )
                            for i, batch in enumerate(batches)  # at most one per writer
                        ]
                        writing = _Writing(futures, batches, time.monotonic())
                if writing is not None:
                    self._finish(consumer, writing)
        finally:
            self.monitor.stop()
            consumer.close()
            for conn in self._conns:
                conn.close()

    def _finish(self, consumer: Consumer, writing: _Writing) -> None:
        """Wait until all of `writing` is durable, then commit its offsets and count it."""
        written = WriteResult()
        for index, future in enumerate(writing.futures):
            self._conns[index], result = future.result()  # a writer may have reconnected
            written.add(result)
        batches = writing.batches
        commit_durable(consumer, [tp for batch in batches for tp in batch.offsets()])
        self._record_latency(batches)
        self.rows_written += sum(len(b) for b in batches)
        self.monitor.batch_done(
            events=sum(len(b.upserts()) for b in batches),
            tombstones=sum(len(b.tombstones()) for b in batches),
            dead_letters=sum(len(b.dead_letters()) for b in batches),
            undecodable=sum(b.undecodable for b in batches),
            seconds=time.monotonic() - writing.began,
            refused=written.refused,
            reconstructed=written.reconstructed,
        )
        self._prune_history()

    def _record_latency(self, batches: list[SinkBatch]) -> None:
        """Add the committed versions' acceptance → queryable latencies to the overview's
        histogram (`sink_latency`): one statement per poll, after the commit that made them
        queryable. Versions of one request share their received time, so the work per
        event is one count; the sink's own write-backs are not new acceptances."""
        received = Counter(
            (v.tenant, v.received_at) for b in batches for v in b.upserts() if not v.from_sink
        )
        if not received:
            return
        now = time.time()
        bucket = bucket_start(now)
        histogram: Counter[tuple[str, datetime, int]] = Counter()
        for (tenant, at), count in received.items():
            histogram[(tenant, bucket, bin_of((now - at.timestamp()) * 1000))] += count
        try:
            add_latency(self._conns[0], histogram)
        except psycopg.Error as exc:  # a figure lost, never a batch held back
            log.warning("could not record the overview's latency: %s", exc)

    def _prune_history(self) -> None:
        """Once a minute, between polls, drop a bounded slice of history rows past their
        retention (`SLUICE_HISTORY_RETENTION_SECONDS`; 0 keeps them), and of the overview's
        figures past theirs (`SLUICE_FIGURES_RETENTION_SECONDS`; 0 keeps them)."""
        if time.monotonic() - self._pruned_at < HISTORY_PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        for what, retention, prune in (
            ("event history", self._settings.history_retention_seconds, prune_history),
            ("overview figure", self._settings.figures_retention_seconds, prune_figures),
        ):
            if retention <= 0:
                continue
            try:
                gone = prune(self._conns[0], retention, HISTORY_PRUNE_ROWS)
            except psycopg.Error as exc:  # housekeeping: the next minute tries again
                log.warning("could not prune %s rows: %s", what, exc)
                continue
            if gone:
                log.info("pruned %d %s rows older than %.0fs", gone, what, retention)

    def _connect(self) -> psycopg.Connection[Any]:
        delay = 0.5
        while True:
            try:
                conn = psycopg.connect(self._settings.database_url, autocommit=True)
                binary_array_parameters(conn)
                return conn
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _write_until_durable(
        self, conn: psycopg.Connection[Any], batch: SinkBatch, first_writes: FirstWrites
    ) -> tuple[psycopg.Connection[Any], WriteResult]:
        """Store `batch` (`write_batch`), retrying through database or Kafka outages on a
        connection reopened when the old one broke."""
        delay = 0.5
        while True:
            try:
                result = write_batch(
                    conn, batch, self._write_backs.send,
                    originals=self._originals, first_writes=first_writes,
                )  # fmt: skip
                return conn, result
            except (psycopg.OperationalError, ProduceFailed) as exc:
                log.warning("database write failed (%s); retrying in %.1fs", exc, delay)
                self.monitor.write_retried()
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                if conn.closed or conn.broken:
                    conn = self._connect()
