"""The DLQ circuit breaker on a real worker: garbage on one partition pauses that partition
(without dead-lettering what tripped it) while valid traffic on the others flows; after the
cool-down the held envelopes are processed exactly once and the partition resumes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from schemas.codec import encode
from schemas.identity import Identity, partition_for
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings

pytestmark = pytest.mark.integration

TENANT = "breaker"
MAX_CONSECUTIVE = 10
GARBAGE = 15
COOLDOWN = 20.0


def _id_on(partition: int, label: str, partitions: int) -> str:
    while True:
        candidate = f"{label}-{uuid.uuid4().hex[:8]}"
        if partition_for(Identity(TENANT, "native", candidate).key(), partitions) == partition:
            return candidate


def _envelope(event_id: str, valid: bool) -> bytes:
    time = "2024-11-23T10:00:00Z" if valid else "not a time"
    raw = json.dumps({"type": "t", "source": "s", "time": time, "data": {}}).encode()
    return encode("IngestEnvelope", {
        "request_id": str(uuid.uuid4()), "tenant": TENANT, "family": "native", "route": {},
        "content_type": "application/json", "received_at": 1732320000000000,
        "items": [{"op": "upsert", "event_id": event_id, "raw": raw, "attempt": 1,
                   "replay_of": None, "receipt_id": None}],
    })  # fmt: skip


def _produce(settings: Settings, partition: int, envelopes: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for value in envelopes:
        producer.produce(f"{settings.topic_prefix}ingest.raw", value, partition=partition)
    assert producer.flush(10) == 0


def _stored(database_url: str, ids: list[str]) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE tenant = %s AND event_id = ANY(%s)", (TENANT, ids)
        ).fetchone()
    return row is not None and row[0] == len(ids)


def _dlq_messages(settings: Settings, partition: int) -> int:
    topic = f"{settings.topic_prefix}events.dlq"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "group.id": f"probe-{uuid.uuid4()}"})  # fmt: skip
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        return int(high - low)
    finally:
        consumer.close()


def _status(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


@pytest.fixture
def worker(tmp_path: Path, kafka_bootstrap: str, database_url: str) -> Iterator[ProcessStack]:
    settings = make_settings(
        kafka_bootstrap, database_url, state_dir=tmp_path / "state",
        breaker_max_consecutive_invalid=MAX_CONSECUTIVE, breaker_max_invalid_ratio=1.0,
        breaker_cooldown_seconds=COOLDOWN,
    )  # fmt: skip
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path / "logs")
    stack.start(("worker", "sink"))
    try:
        yield stack
    finally:
        stack.stop()


def test_garbage_trips_one_partition_while_the_others_flow(
    worker: ProcessStack, database_url: str
) -> None:
    settings = worker.settings
    n = settings.partitions
    status_file = settings.state_dir / f"breaker-{settings.worker_id}.json"
    held_valid = [_id_on(0, "after-garbage", n) for _ in range(3)]
    _produce(settings, 0, [_envelope(_id_on(0, "junk", n), False) for _ in range(GARBAGE)]
             + [_envelope(i, True) for i in held_valid])  # fmt: skip
    first_wave = {p: [_id_on(p, "ok", n) for _ in range(5)] for p in range(1, n)}
    for p, ids in first_wave.items():
        _produce(settings, p, [_envelope(i, True) for i in ids])

    tripped = eventually(lambda: (_status(status_file) or {}).get("open"), timeout=90)
    reason = tripped[f"{settings.topic_prefix}ingest.raw/0"]["reason"]
    assert reason == f"{MAX_CONSECUTIVE + 1} invalid events in a row"
    second_wave = {p: [_id_on(p, "during", n) for _ in range(5)] for p in range(1, n)}
    for p, ids in second_wave.items():
        _produce(settings, p, [_envelope(i, True) for i in ids])
    flowing = [i for wave in (first_wave, second_wave) for ids in wave.values() for i in ids]
    assert eventually(lambda: _stored(database_url, flowing), timeout=60)
    assert (_status(status_file) or {}).get("open"), "partition 0 resumed before the check"
    assert not _stored(database_url, held_valid[:1])
    assert _dlq_messages(settings, 0) == MAX_CONSECUTIVE  # the tripping envelope is held
    assert "circuit breaker tripped" in worker.log_tail("worker", 200)

    assert eventually(lambda: _stored(database_url, held_valid), timeout=COOLDOWN + 60)
    assert (_status(status_file) or {}).get("open") == {}
    assert _dlq_messages(settings, 0) == GARBAGE  # every garbage envelope dead-lettered once
