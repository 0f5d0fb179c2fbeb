"""The raw baselines: the same work done by the bare client libraries, no Sluice code.

* door: a confluent-kafka `produce()` loop of the same events, one keyed message
  each, with the door's own producer settings (idempotent, acks=all, lz4);
* stream: a confluent consume → produce loop from `ingest.raw` to a topic of
  the bench's own, one message per event (the envelope is opened to find them);
* sink: binary COPY of the same rows into the same table, under a tenant of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from psycopg import sql

from schemas.codec import decode
from sinks.bulk import copy_event_rows
from sinks.rows import EventRow


@dataclass(frozen=True)
class RawRun:
    """Units moved, wall seconds, and CPU seconds of this (the harness's) process."""

    units: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float | None = None
    """CPU of the server doing the work (PostgreSQL, for the COPY), when it was measured."""

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        out = {
            "units": self.units,
            "seconds": self.seconds,
            "per_second": self.rate,
            "cpu_us_per_unit": 1e6 * self.cpu_seconds / max(self.units, 1),
        }
        if self.server_cpu_seconds is not None:
            out["server_cpu_us_per_unit"] = 1e6 * self.server_cpu_seconds / max(self.units, 1)
        return out


class _Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def run(self, units: int) -> RawRun:
        return RawRun(units, time.perf_counter() - self.wall, time.process_time() - self.cpu)


def produce_loop(
    config: dict[str, Any],
    topic: str,
    messages: Sequence[tuple[bytes, bytes]],
    min_seconds: float = 0.0,
) -> RawRun:
    """Produce every (key, value) to `topic` and wait for Kafka to acknowledge them all.

    The messages are produced again, whole passes at a time, until `min_seconds` have
    passed: a pass of 300k takes under half a second, short enough for the final wait
    for acknowledgements and the machine's hiccups to move the rate by a third.
    """
    producer = Producer(config)
    producer.produce(topic, b"warm-up", b"warm-up")  # connection and producer id, untimed
    producer.flush(30)
    clock, produced = _Clock(), 0
    while produced == 0 or time.perf_counter() - clock.wall < min_seconds:
        for i, (key, value) in enumerate(messages):
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
            if i % 1000 == 0:
                producer.poll(0)
        produced += len(messages)
    producer.flush(120)
    return clock.run(produced)


def consume_produce_loop(
    kafka: dict[str, Any],
    producer_config: dict[str, Any],
    source: str,
    target: str,
    events: int,
    timeout: float,
) -> RawRun:
    """Read envelopes from `source` (from the start) and write one message per event to `target`.

    Timed from the first envelope received until every event written is acknowledged.
    """
    consumer = Consumer(
        {
            **kafka,
            "group.id": f"bench-raw-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([source])
    producer = Producer(producer_config)
    done, clock, deadline = 0, None, time.monotonic() + timeout
    try:
        while done < events and time.monotonic() < deadline:
            batch = consumer.consume(1000, timeout=0.5)
            if batch and clock is None:
                clock = _Clock()
            for msg in batch:
                value, partition = msg.value(), msg.partition()
                if msg.error() is not None or value is None or partition is None:
                    continue
                done += _forward(producer, value, target, partition)
            producer.poll(0)
        producer.flush(120)
    finally:
        consumer.close()
    return (clock or _Clock()).run(done)


def _forward(producer: Producer, value: bytes, target: str, partition: int) -> int:
    _, envelope = decode(value, "IngestEnvelope")
    for item in envelope["items"]:
        while True:
            try:
                producer.produce(target, item["raw"], item["event_id"].encode(), partition)
                break
            except BufferError:
                producer.poll(0.01)
    return len(envelope["items"])


def read_event_rows(
    kafka: dict[str, Any], topic: str, expected: int, timeout: float
) -> list[EventRow]:
    """Every canonical event on `topic`, decoded into the rows the sink writes (untimed)."""
    consumer = Consumer(
        {
            **kafka,
            "group.id": f"bench-rows-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    rows: list[EventRow] = []
    deadline = time.monotonic() + timeout
    try:
        while len(rows) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(5000, timeout=0.5):
                value = msg.value()
                if msg.error() is None and value is not None:
                    rows.append(EventRow.from_record(decode(value, "CanonicalEvent")[1]))
    finally:
        consumer.close()
    return rows


def copy_rows(
    database_url: str,
    rows: Sequence[EventRow],
    tenant: str,
    server_cpu: Callable[[], float | None] = lambda: None,
) -> RawRun:
    """Binary COPY of `rows` into `events` under `tenant`, committed; then remove them (untimed).

    `server_cpu` reads PostgreSQL's CPU seconds so far (all its processes, as the sink
    stage counts them): read before and after the COPY, it says what the COPY cost it."""
    with psycopg.connect(database_url) as conn:
        server_before = server_cpu()
        clock = _Clock()
        with conn.cursor() as cur:
            sent = copy_event_rows(cur, "events", rows, tenant=tenant)
        conn.commit()
        run = clock.run(sent)
        server_after = server_cpu()
        if server_before is not None and server_after is not None:
            run = replace(run, server_cpu_seconds=server_after - server_before)
        conn.execute("DELETE FROM events WHERE tenant = %s", (tenant,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM events")  # leave the table as the next phase would find it
    return run


def read_produce_times(
    kafka: dict[str, Any], topic: str, start: Sequence[int], key_prefix: bytes, timeout: float
) -> dict[str, float]:
    """Event id → when it was produced to `topic` (message timestamp, seconds since the epoch).

    Reads each partition from `start[partition]` to its current end, keeping messages
    whose key starts with `key_prefix` (`tenant|family|`).
    """
    consumer = Consumer(
        {**kafka, "group.id": f"bench-times-{time.time_ns()}", "enable.auto.commit": False}
    )  # fmt: skip
    ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(len(start))]  # fmt: skip
    consumer.assign([TopicPartition(topic, p, o) for p, o in enumerate(start)])
    times: dict[str, float] = {}
    remaining = {p for p in range(len(start)) if ends[p] > start[p]}
    deadline = time.monotonic() + timeout
    try:
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(5000, timeout=0.5):
                key, partition, offset = msg.key(), msg.partition(), msg.offset()
                if msg.error() is not None or partition is None or offset is None:
                    continue
                if key is not None and key.startswith(key_prefix):
                    times[key[len(key_prefix) :].decode()] = msg.timestamp()[1] / 1000
                if offset + 1 >= ends[partition]:
                    remaining.discard(partition)
    finally:
        consumer.close()
    return times


def delete_tenants(database_url: str, tenant_prefix: str) -> int:
    """Delete every row whose tenant starts with `tenant_prefix`, in every table that has a
    tenant column (the benchmark's own tenants); how many rows went."""
    pattern = tenant_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    removed = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT c.table_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.column_name = 'tenant' AND c.table_schema = current_schema()"
            " AND t.table_type = 'BASE TABLE'"
        ).fetchall()]  # fmt: skip
        for _ in range(3):  # a table referenced by another empties once the other has
            deferred = []
            for table in tables:
                query = sql.SQL("DELETE FROM {} WHERE tenant LIKE %s").format(sql.Identifier(table))
                try:
                    removed += conn.execute(query, (pattern,)).rowcount
                except psycopg.errors.ForeignKeyViolation:
                    deferred.append(table)
            tables = deferred
    return removed
