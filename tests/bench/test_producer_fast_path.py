"""`AsyncProducer.send_batch`'s positional fast path delivers exactly what it was given."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from sluice.kafka import AsyncProducer, OutgoingMessage, producer_config
from sluice.settings import Settings

pytestmark = pytest.mark.integration


async def test_values_keys_partitions_and_headers_arrive_as_sent(kafka_bootstrap: str) -> None:
    topic = f"fast-path-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3)])[topic].result(30)
    sent: list[OutgoingMessage] = [
        (topic, 2, b"k1", b"v1", None),
        (topic, 0, None, b"v2", [("sluice.version", b"7")]),
        (topic, 1, b"k3", None, [("a", b"1"), ("b", b"2")]),
    ]
    producer = AsyncProducer(producer_config(Settings(kafka_bootstrap_servers=kafka_bootstrap)))
    try:
        await producer.send_batch(sent).wait()
    finally:
        producer.close()

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    got = []
    try:
        for _ in range(40):
            got += [m for m in consumer.consume(10, timeout=0.5) if m.error() is None]
            if len(got) == len(sent):
                break
    finally:
        consumer.close()
    received = {(m.partition(), m.key(), m.value(), tuple(m.headers() or ())) for m in got}
    assert received == {(p, k, v, tuple(h or ())) for _, p, k, v, h in sent}
