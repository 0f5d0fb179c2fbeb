"""Invariant 1 in the worker: `Forwarder.handle` returns (and so lets Faust acknowledge the
batch) only once Kafka acknowledged every result, and retries a batch Kafka refused.

Deterministic: the producer here only queues, and the test decides when (and how) each
delivery report arrives, through the real `DeliveryBatch`. What Kafka itself does with the
results is the integration suites' business; this is the order of the worker's own steps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from runtime.kafka import DeliveryBatch, OutgoingMessage
from runtime.settings import Settings
from schemas.codec import encode
from schemas.topics import TopicNames
from streams.app import Forwarder

TOPICS = TopicNames.for_prefix("t.")
GOOD = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{"v":1}}'


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class Event:
    message: Message


class HeldProducer:
    """Queues batches; nothing is delivered until the test settles them."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[OutgoingMessage], DeliveryBatch]] = []
        self.queued = asyncio.Event()

    def send_batch(self, messages: list[OutgoingMessage], **_: Any) -> DeliveryBatch:
        batch = DeliveryBatch(asyncio.get_running_loop(), len(messages), in_loop=True)
        self.sent.append((list(messages), batch))
        self.queued.set()
        return batch

    async def next_batch(self) -> tuple[list[OutgoingMessage], DeliveryBatch]:
        await asyncio.wait_for(self.queued.wait(), 5)
        self.queued.clear()
        return self.sent[-1]


def _envelope_event(offset: int) -> Event:
    envelope = {
        "request_id": "r", "tenant": "acme", "family": "native", "route": {},
        "content_type": "application/json", "received_at": datetime(2024, 1, 1, tzinfo=UTC),
        "items": [{"op": "upsert", "event_id": f"e{offset}", "raw": GOOD, "attempt": 1,
                   "replay_of": None, "receipt_id": None}],
    }  # fmt: skip
    return Event(Message(TOPICS.ingest_raw, 0, offset, encode("IngestEnvelope", envelope)))


def _forwarder(tmp_path: Path) -> tuple[Forwarder, HeldProducer]:
    forwarder = Forwarder(Settings(state_dir=tmp_path), TOPICS)
    held = HeldProducer()
    forwarder._producer = held  # type: ignore[assignment]
    return forwarder, held


async def test_handle_returns_only_after_every_result_is_acknowledged(tmp_path: Path) -> None:
    forwarder, held = _forwarder(tmp_path)
    handling = asyncio.create_task(forwarder.handle([_envelope_event(7), _envelope_event(8)]))
    messages, batch = await held.next_batch()
    assert [m[0] for m in messages] == [TOPICS.events, TOPICS.events]
    batch.on_delivery(None, None)  # type: ignore[arg-type]  # one of two acknowledged
    await asyncio.sleep(0.05)
    assert not handling.done(), "handle returned with a result not yet acknowledged"
    batch.on_delivery(None, None)  # type: ignore[arg-type]
    await asyncio.wait_for(handling, 5)


async def test_a_refused_batch_is_sent_again_and_handle_waits_for_it(tmp_path: Path) -> None:
    forwarder, held = _forwarder(tmp_path)
    handling = asyncio.create_task(forwarder.handle([_envelope_event(9)]))
    first, batch = await held.next_batch()
    batch.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)  # type: ignore[arg-type]
    again, retried = await held.next_batch()  # after the back-off
    assert again == first and not handling.done()
    retried.on_delivery(None, None)  # type: ignore[arg-type]
    await asyncio.wait_for(handling, 5)
