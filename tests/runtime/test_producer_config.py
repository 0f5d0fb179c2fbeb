"""Invariant 1's producer half: every producer Sluice builds waits for all in-sync replicas
(`acks=all`) and is idempotent, read from the confluent-kafka producers that the door, the
stream and the sink's write-backs actually construct (each then delivers to a real broker).

A one-broker cluster cannot tell `acks=all` from `acks=1` by behaviour (Kafka 4 acknowledged
an `acks=all` write to a topic with `min.insync.replicas=2` on one replica when tried), so
the configuration each producer was built with is what is checked; the fault suite's
three-broker cases show what it buys.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import confluent_kafka
import pytest
from aiohttp import web
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

import runtime.kafka
import sinks.republish
from producer_api.resources import DOOR, SETTINGS, door_context
from runtime.kafka import AsyncProducer, ProduceFailed
from runtime.settings import Settings
from schemas.topics import TopicNames
from sinks.consumer import Sink
from sinks.republish import WriteBackProducer
from streams.app import Forwarder
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def _topic(bootstrap: str) -> str:
    topic = f"acks-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(30)
    return topic


async def _delivered(producer: AsyncProducer, topic: str) -> None:
    await asyncio.wait_for(producer.send_batch([(topic, 0, b"k", b"v", None)]).wait(), 30)


async def test_every_producer_is_idempotent_and_waits_for_all_in_sync_replicas(
    kafka_bootstrap: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: dict[str, dict[str, Any]] = {}
    building = ""

    class Recorded(confluent_kafka.Producer):  # type: ignore[misc]
        def __init__(self, config: dict[str, Any]) -> None:
            built[building] = dict(config)
            super().__init__(config)

    monkeypatch.setattr(runtime.kafka, "Producer", Recorded)
    monkeypatch.setattr(sinks.republish, "Producer", Recorded)
    topic = _topic(kafka_bootstrap)
    settings = make_settings(kafka_bootstrap, database_url)

    building = "door"
    app = web.Application()
    app[SETTINGS] = settings
    lifetime = door_context(app)
    await lifetime.__anext__()
    try:
        await _delivered(app[DOOR].publisher.producer, topic)
    finally:
        await lifetime.aclose()
    building = "stream"
    stream = Forwarder(settings, TopicNames.for_prefix(settings.topic_prefix))._get_producer()
    try:
        await _delivered(stream, topic)
    finally:
        stream.close(timeout=5)
    building = "sink write-backs"
    write_backs = Sink(settings)._write_backs
    write_backs._topic = topic
    await asyncio.to_thread(write_backs.send, [(0, b"k", None, [])])

    assert set(built) == {"door", "stream", "sink write-backs"}, built
    for name, config in built.items():
        assert config.get("acks") == "all", (name, config.get("acks"))
        assert config.get("enable.idempotence") is True, (name, config)


def test_a_sink_write_back_raises_unless_kafka_acknowledged_it() -> None:
    """The sink sends a delete's tombstones inside its transaction: `send` must raise when
    Kafka did not take them, so neither the rows' removal nor the offsets commit past an
    unacknowledged tombstone (docs/design.md, invariant 4)."""
    nowhere = Settings(kafka_bootstrap_servers="127.0.0.1:1", produce_timeout_ms=1000)
    producer = WriteBackProducer(runtime.kafka.producer_config(nowhere), "t", timeout=3)
    with pytest.raises(ProduceFailed):
        producer.send([(0, b"k", None, [])])
