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
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
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
"""Longest wait to fill a poll: it ends at `sink_batch_size` messages (one lane's) or after
this. While the lane's writer is busy with the poll before, this is how long a poll may gather;
at low rates it bounds the latency the sink adds (0.5 s here made half of the end-to-end p50 at
half load)."""

BATCH_LEAST_SECONDS = 0.01
"""Shortest wait to fill a poll: once it holds a message and this has passed, a poll ends as
soon as the lane's writer is idle. So a poll gathers while the poll before it is written (the
busier PostgreSQL, the larger the polls), and a lane that keeps up does not hold what it took
for the rest of `BATCH_WAIT_SECONDS`: in `make bench`'s half-rate phase that wait was most of
the time an event spent in the sink."""

IDLE_CHECK_SECONDS = 0.005
"""How often a filling poll looks whether the lane's writer has become idle."""


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


def commit_soon(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    """Commit offsets of rows already durable without waiting for the broker's answer.

    The lane writes its next poll meanwhile: waiting for each commit's answer held a lane
    ~30 % of the time at half `make bench`'s sustainable rate (py-spy, 2026-12-07), its
    writer idle. A commit that fails is logged (`_commit_failed`) and covered by the next
    one; until then its rows are stored and redelivery rewrites them harmlessly. A stopping
    lane's last commit waits (`_confirm`).
    """
    try:
        consumer.commit(offsets=offsets, asynchronous=True)
    except KafkaException as exc:
        log.warning("offset commit not sent: %s", exc)


def _confirm(consumer: Consumer, sent: dict[tuple[str, int], TopicPartition]) -> None:
    """A stopping lane's last commit, which waits for the broker's answer: every partition
    it still holds, at the last offset it committed without waiting (`commit_soon`)."""
    held = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    offsets = [tp for key, tp in sent.items() if key in held]
    if offsets:
        commit_durable(consumer, offsets)


def _commit_failed(error: KafkaError | None, offsets: list[TopicPartition]) -> None:
    """librdkafka's answer to a commit (`on_commit`): log the ones that failed."""
    failed = [tp for tp in offsets if tp.error is not None]
    if error is not None or failed:
        log.warning("offset commit failed: %s %s", error, [str(tp.error) for tp in failed])


def consumer_config(settings: Settings, lane: int = 0, lanes: int = 1) -> dict[str, Any]:
    """The consumer of one of a sink's `lanes` (`Sink.run`): they share the prefetch."""
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
        # Range assignment gives a member the same partition numbers of every topic, so an
        # identity's records on `events` and `events.dlq` reach one lane, in order. (The
        # default lists roundrobin too, which a member could be handed on its own.)
        "partition.assignment.strategy": "range",
        # What librdkafka fetches ahead of the sink (its default is 64 MB), shared by its
        # lanes: about one poll of events, enough to keep a poll ready while the last one
        # is written. A sink behind a backlog otherwise held ~55 MB more than it needed
        # (1.89x its memory before a 10x burst, draining ~1.8M events afterwards).
        "queued.max.messages.kbytes": max(1, settings.sink_prefetch_kbytes // lanes),
        # What one fetch may bring of a partition (librdkafka's default is 1 MB; a lane has
        # 1/lanes of the partitions and of the prefetch, so the share is the same): the
        # prefetch refills in one round trip to the broker instead of one per MB. With 1 MB
        # the sink waited on refills between polls, a quarter of its main thread's time.
        "max.partition.fetch.bytes": _fetch_bytes(settings),
        "client.id": "sluice-sink" if lanes == 1 else f"sluice-sink-{lane}",
        "on_commit": _commit_failed,
    }


def _fetch_bytes(settings: Settings) -> int:
    """A partition's share of the prefetch, at least librdkafka's default of 1 MB."""
    share = settings.sink_prefetch_kbytes * 1024 // max(settings.partitions, 1)
    return max(1 << 20, share)


POLL_CHUNK = 4096
"""Messages taken from librdkafka at a time while a poll fills. Each chunk is decoded into
the poll's batch before the next is taken, so a poll's raw messages are never held all
at once beside their rows: a 40,000-message poll held ~25 MB of them at the sink's peak,
while it drained a backlog."""


def take_poll(
    consumer: Consumer,
    size: int,
    wait: float,
    topics: TopicNames,
    *,
    idle: Callable[[], bool] | None = None,
    least: float = 0.0,
) -> SinkBatch | None:
    """Up to `size` messages, decoded into one batch in poll order (None: nothing was taken).

    Messages librdkafka already holds are taken at once, up to `size`. Beyond those the poll
    waits for more until `wait` seconds have passed or, when `idle` is given, until it holds
    a message, `least` seconds have passed and `idle()` is true (the lane's writer has nothing
    left to write).
    """
    batch = SinkBatch()
    began = time.monotonic()
    deadline, settled = began + wait, began + least
    taken = 0
    while taken < size:
        want = min(POLL_CHUNK, size - taken)
        now = time.monotonic()
        until = deadline if idle is None else min(deadline, max(settled, now + IDLE_CHECK_SECONDS))
        chunk = consumer.consume(want, max(0.0, until - now))
        for msg in chunk:
            if msg.error() is None:
                batch.take(msg, topics)
        got = len(chunk)
        del chunk
        taken += got
        if got == want:  # librdkafka may hold more already
            continue
        now = time.monotonic()
        if now >= deadline or (idle is not None and taken and now >= settled and idle()):
            break
    return batch if batch.offsets() else None


def _always() -> bool:
    return True


@dataclass
class _Done:
    """A lane's poll that is durable: the connection its writer used, what it wrote and
    when (epoch seconds) that committed."""

    conn: psycopg.Connection[Any]
    writing: _Writing
    written: WriteResult
    committed_at: float


class _SideConnection:
    """A lane's second PostgreSQL connection, for what is not an event (the overview's
    latency figures, pruning), used by the lane's own thread while its writer holds the
    first. Its commits do not wait for the WAL to be flushed (`synchronous_commit = off`):
    a crash loses a figure at most. Opened when first needed and again once broken (at most
    every `RETRY_SECONDS`); without it the figure or the pruning is skipped."""

    RETRY_SECONDS = 10.0

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._tried = -self.RETRY_SECONDS

    def get(self) -> psycopg.Connection[Any] | None:
        if self._conn is not None and not self._conn.broken and not self._conn.closed:
            return self._conn
        self.close()
        if time.monotonic() - self._tried < self.RETRY_SECONDS:
            return None
        self._tried = time.monotonic()
        try:
            self._conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=5,
                options="-c synchronous_commit=off",
            )  # fmt: skip
        except psycopg.Error as exc:
            log.warning("no side connection for figures and pruning: %s", exc)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class _Writing:
    """A lane's poll being written by its writer thread; its offsets are committed once it is
    durable."""

    future: Future[tuple[psycopg.Connection[Any], WriteResult, float]]
    """The lane's connection, what was written, and when (epoch seconds) it committed."""
    batch: SinkBatch
    began: float


class Sink:
    """Runs the consume → write → commit loop until `stop()` is called."""

    def __init__(self, settings: Settings) -> None:
        if settings.sink_writers < 1:
            raise ValueError(f"SLUICE_SINK_WRITERS must be at least 1, not {settings.sink_writers}")
        self._settings = settings
        self._topics = TopicNames.for_prefix(settings.topic_prefix)
        self._stopping = threading.Event()
        self._pruning = threading.Lock()
        self._writing_since: list[float | None] = [None] * settings.sink_writers
        """When each lane's write in flight began (None: none in flight)."""
        self.monitor = SinkMonitor(settings)
        self._write_backs = WriteBackProducer(producer_config(settings), self._topics.events)
        self._originals = IngestRawReader.from_settings(settings, self._topics.ingest_raw)
        self._pruned_at = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Run `sink_writers` lanes at once, each its own consumer of the sink's group (so
        its own partitions), its own PostgreSQL connection and its own commits, until
        `stop()`; a lane that fails stops the others and its error is raised.

        Why lanes, not one consumer split by partition: librdkafka hands a backlog out one
        partition at a time (a fetched partition's messages are queued together, and each
        is drained before the next), so a poll of a backlog held one partition, and only
        one writer of a poll split by partition number had rows to write. PostgreSQL then
        stored them in one backend while the other waited (`make bench`, 2026-12-07: one
        writer idle ~40 % of the time). Each lane's consumer has partitions of its own, so
        every lane has rows whenever they wait for it.

        The group's range assignment gives a lane the same partition numbers of `events`
        and `events.dlq`, so all of an identity's records (versions, deletes, dead
        letters) and a partition's copy of a delete by filter are in one lane, in order,
        as in one sink of several (`consumer_config`).
        """
        lanes = self._settings.sink_writers
        consumers = []
        for lane in range(lanes):  # all subscribe before any polls: they join the group together
            consumer = Consumer(consumer_config(self._settings, lane, lanes))
            consumer.subscribe([self._topics.events, self._topics.dlq])
            consumers.append(consumer)
        self.monitor.start()
        try:
            with ThreadPoolExecutor(lanes, thread_name_prefix="sink-lane") as pool:
                running = [pool.submit(self._lane, i, c) for i, c in enumerate(consumers)]
                wait(running, return_when=FIRST_EXCEPTION)
                self._stopping.set()  # one lane failed, or all were stopped
            for future in running:
                future.result()  # raises a lane's error
        finally:
            self.monitor.stop()

    def _lane(self, lane: int, consumer: Consumer) -> None:
        """Consume, decode and write polls; commit each poll's offsets once it is durable.

        Pipelined: while PostgreSQL applies poll N (the lane's writer thread waits on it,
        without the GIL), the lane consumes and decodes poll N+1. Poll N's own offsets,
        not the consumer's position, are committed after its transaction, so nothing is
        committed before it is stored; the lane hands N+1 to the writer without waiting for
        the broker's answer to that commit, and counts N meanwhile.
        """
        conn = self._connect()
        side = _SideConnection(self._settings.database_url)
        first_writes = FirstWrites()
        writing: _Writing | None = None
        sent: dict[tuple[str, int], TopicPartition] = {}  # committed without waiting
        try:
            with ThreadPoolExecutor(1, thread_name_prefix=f"sink-write-{lane}") as writer:
                while not self._stopping.is_set():
                    # `sink_batch_size` bounds a transaction (20,000 against 10,000 made
                    # the sink 10-20 % faster in `make bench`).
                    batch = take_poll(
                        consumer, self._settings.sink_batch_size, BATCH_WAIT_SECONDS, self._topics,
                        idle=_always if writing is None else writing.future.done,
                        least=BATCH_LEAST_SECONDS,
                    )  # fmt: skip
                    done = None if writing is None else self._finish(consumer, writing, lane, sent)
                    conn, writing = conn if done is None else done.conn, None
                    if batch is not None:
                        future = writer.submit(self._write_until_durable, conn, batch, first_writes)
                        writing = _Writing(future, batch, time.monotonic())
                        self._writing_since[lane] = writing.began
                    if done is not None:  # while the next poll is written
                        self._account(done, side)
                        del done  # its rows, so a lane holds two polls at most, not three
                if writing is not None:
                    done = self._finish(consumer, writing, lane, sent)
                    conn = done.conn
                    self._account(done, side)
            _confirm(consumer, sent)
        finally:
            consumer.close()
            conn.close()
            side.close()

    def _finish(
        self,
        consumer: Consumer,
        writing: _Writing,
        lane: int,
        sent: dict[tuple[str, int], TopicPartition],
    ) -> _Done:
        """Wait until `writing` is durable, then commit its offsets without waiting for the
        broker's answer, and note them in `sent`."""
        conn, written, committed_at = writing.future.result()
        self._writing_since[lane] = None
        offsets = writing.batch.offsets()
        commit_soon(consumer, offsets)
        sent.update(((tp.topic, tp.partition), tp) for tp in offsets)
        return _Done(conn, writing, written, committed_at)

    def _account(self, done: _Done, side: _SideConnection) -> None:
        """Count a durable poll, add its latency figure and prune when due, on the lane's
        side connection (its writer may be writing the next poll on the other)."""
        batch = done.writing.batch
        self.monitor.batch_done(
            events=len(batch.upserts()),
            tombstones=len(batch.tombstones()),
            dead_letters=len(batch.dead_letters()),
            undecodable=batch.undecodable,
            seconds=time.monotonic() - done.writing.began,
            refused=done.written.refused,
            reconstructed=done.written.reconstructed,
            progress=not self._a_lane_is_stuck(),
        )
        conn = side.get()
        if conn is not None:
            self._record_latency(conn, batch, done.committed_at)
            self._prune_history(conn)

    def _a_lane_is_stuck(self) -> bool:
        """Whether a lane's write has been in flight for longer than the watchdog allows:
        the other lanes' commits then do not count as the sink's progress."""
        limit = self._settings.watchdog_stall_seconds
        now = time.monotonic()
        return limit > 0 and any(
            began is not None and now - began > limit for began in self._writing_since
        )

    def _record_latency(
        self, conn: psycopg.Connection[Any], batch: SinkBatch, committed_at: float
    ) -> None:
        """Add the committed versions' acceptance → queryable latencies (to `committed_at`,
        when the transaction that made them queryable committed) to the overview's histogram
        (`sink_latency`): one statement per poll. Versions of one request share their
        received time, so the work per event is one count; the sink's own write-backs are
        not new acceptances."""
        received = Counter((v.tenant, v.received_at) for v in batch.upserts() if not v.from_sink)
        if not received:
            return
        bucket = bucket_start(committed_at)
        histogram: Counter[tuple[str, datetime, int]] = Counter()
        for (tenant, at), count in received.items():
            histogram[(tenant, bucket, bin_of((committed_at - at.timestamp()) * 1000))] += count
        try:
            add_latency(conn, histogram)
        except psycopg.Error as exc:  # a figure lost, never a batch held back
            log.warning("could not record the overview's latency: %s", exc)

    def _prune_history(self, conn: psycopg.Connection[Any]) -> None:
        """Once a minute, between polls, drop a bounded slice of history rows past their
        retention (`SLUICE_HISTORY_RETENTION_SECONDS`; 0 keeps them), and of the overview's
        figures past theirs (`SLUICE_FIGURES_RETENTION_SECONDS`; 0 keeps them). Whichever lane
        finishes a poll first once the minute is up prunes, on its side connection.
        """
        with self._pruning:
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
                gone = prune(conn, retention, HISTORY_PRUNE_ROWS)
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
    ) -> tuple[psycopg.Connection[Any], WriteResult, float]:
        """Store `batch` (`write_batch`), retrying through database or Kafka outages on a
        connection reopened when the old one broke."""
        delay = 0.5
        while True:
            try:
                result = write_batch(
                    conn, batch, self._write_backs.send,
                    originals=self._originals, first_writes=first_writes,
                )  # fmt: skip
                return conn, result, time.time()
            except (psycopg.OperationalError, ProduceFailed) as exc:
                log.warning("database write failed (%s); retrying in %.1fs", exc, delay)
                self.monitor.write_retried()
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                if conn.closed or conn.broken:
                    conn = self._connect()
