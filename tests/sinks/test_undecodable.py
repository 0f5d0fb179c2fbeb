"""The sink skips, and commits past, a record of `events` or `events.dlq` it cannot decode
(sinks/batch.py: skipped, logged and counted, never retried), on real Kafka and PostgreSQL.

Garbage is written to every partition of both topics with a plain producer, as a foreign
producer or a corrupted copy would; valid records after it on the same partitions are
stored, the sink's `sluice_sink_rows_total{kind="undecodable"}` counts each garbage record,
and the sink's group commits past every one of them, so a restart does not read them again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from runtime.topic_admin import ensure_topics
from schemas.deadletter import Origin, build_dead_letter
from schemas.outcome import Violation
from sluice.stack import ProcessStack
from tests.conftest import eventually, free_port, make_settings
from tests.httpclient import call
from tests.producer_api.test_metrics import _sample

pytestmark = pytest.mark.integration

GARBAGE = (b"not avro at all", b"\x00\x00\x00\x03\xe7\xff\xff\xff")
"""No Confluent header; and a header with an id no schema has, over bytes no record is."""


@pytest.fixture
def sink_stack(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> Iterator[tuple[ProcessStack, int]]:
    port = free_port()
    settings = make_settings(kafka_bootstrap, database_url, sink_metrics_port=port)
    ensure_topics(settings)
    stack = ProcessStack(settings, tmp_path / "logs")
    stack.start()
    try:
        stack.wait_ready(timeout=120)
        yield stack, port
    finally:
        stack.stop()


def _undecodable(port: int) -> float:
    try:
        text = call("GET", f"http://127.0.0.1:{port}/metrics", timeout=5).body.decode()
    except OSError:
        return -1
    return _sample(text, "sluice_sink_rows_total", kind="undecodable") or 0


def test_the_sink_skips_and_commits_past_records_it_cannot_decode(
    sink_stack: tuple[ProcessStack, int], new_key: Callable[..., str]
) -> None:
    stack, port = sink_stack
    settings = stack.settings
    topics = [f"{settings.topic_prefix}events", f"{settings.topic_prefix}events.dlq"]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    garbage_at: dict[tuple[str, int], int] = {}

    def noted(err: object, msg: object) -> None:
        assert err is None, err
        key = (msg.topic(), msg.partition())  # type: ignore[attr-defined]
        garbage_at[key] = max(garbage_at.get(key, -1), msg.offset())  # type: ignore[attr-defined]

    for topic in topics:
        for partition in range(settings.partitions):
            for value in GARBAGE:
                producer.produce(topic, value, b"garbage", partition=partition, on_delivery=noted)
    assert producer.flush(30) == 0
    sent = len(topics) * settings.partitions * len(GARBAGE)
    assert len(garbage_at) == len(topics) * settings.partitions

    # After the garbage: on every partition of events.dlq a dead letter, and events through
    # the door until every partition of `events` holds one stored after it.
    tenant = f"undecodable-{uuid.uuid4().hex[:6]}"
    key = new_key(tenant)
    letters = []
    for partition in range(settings.partitions):
        origin = Origin(tenant, "native", {}, "application/json", datetime.now(UTC))
        letter = build_dead_letter(
            raw=b'{"id": "after the garbage"}', origin=origin, stage="stream",
            reasons=(Violation("processing_error", "$", "a marker"),),
        )  # fmt: skip
        producer.produce(topics[1], letter.value, letter.key, partition=partition)
        letters.append(letter.dead_letter_id)
    assert producer.flush(30) == 0
    events = [{"id": f"after-{i}", "type": "usage", "source": "/undecodable",
               "time": "2024-11-23T10:00:00Z", "data": {"i": i}} for i in range(64)]  # fmt: skip
    answer = call("POST", f"{stack.base_url}/v1/events", json_body=events,
                  headers={"X-API-Key": key})  # fmt: skip
    assert answer.status == 202, answer.body

    auth = {"X-API-Key": key}
    for dead_letter_id in letters:
        eventually(
            lambda d=dead_letter_id: (
                call(  # type: ignore[misc]
                    "GET", f"{stack.base_url}/v1/dead-letters/{d}", headers=auth
                ).status
                == 200
            ),
            timeout=90,
        )
    for event in events:
        eventually(
            lambda e=event: (
                call(  # type: ignore[misc]
                    "GET", f"{stack.base_url}/v1/events/{e['id']}", headers=auth
                ).status
                == 200
            ),
            timeout=90,
        )
    assert eventually(lambda: _undecodable(port) >= sent or None, timeout=60)
    assert _undecodable(port) == sent  # each counted once: none was retried

    group = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                      "group.id": settings.sink_group, "enable.auto.commit": False})  # fmt: skip
    try:

        def committed_past_all() -> bool:
            wanted = [TopicPartition(t, p) for (t, p) in garbage_at]
            got = {(tp.topic, tp.partition): tp.offset for tp in group.committed(wanted, 10)}
            return all(got[where] > offset for where, offset in garbage_at.items())

        assert eventually(committed_past_all, timeout=60)
    finally:
        group.close()
    assert json.loads(answer.body)["accepted"] == len(events)
