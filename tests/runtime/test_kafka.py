"""`AsyncProducer.send_batch`'s positional fast path delivers exactly what it was given."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from runtime.kafka import AsyncProducer, OutgoingMessage, producer_config
from runtime.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("served_in_loop", [False, True], ids=["poll-thread", "event-loop"])
async def test_values_keys_partitions_and_headers_arrive_as_sent(
    kafka_bootstrap: str, served_in_loop: bool
) -> None:
    topic = f"fast-path-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3)])[topic].result(30)
    sent: list[OutgoingMessage] = [
        (topic, 2, b"k1", b"v1", None),
        (topic, 0, None, b"v2", [("sluice.version", b"7")]),
        (topic, 1, b"k3", None, [("a", b"1"), ("b", b"2")]),
    ]
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    threads = {t.ident for t in threading.enumerate()}
    producer = AsyncProducer(producer_config(settings), served_in_loop=served_in_loop)
    started = [t.name for t in threading.enumerate() if t.ident not in threads]
    assert started == ([] if served_in_loop else ["kafka-delivery"])
    try:
        batch = producer.send_batch(sent, record_offsets=True)
        await asyncio.wait_for(batch.wait(), 30)  # acknowledged, whoever serves the reports
        assert set(batch.offsets) == {(topic, 0), (topic, 1), (topic, 2)}
        # A second batch after the first drained: the loop starts serving again.
        again = producer.send_batch([(topic, 0, None, b"v4", None)], record_offsets=True)
        await asyncio.wait_for(again.wait(), 30)
        assert again.offsets[(topic, 0)] == batch.offsets[(topic, 0)] + 1
    finally:
        producer.close()
    sent.append((topic, 0, None, b"v4", None))

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
