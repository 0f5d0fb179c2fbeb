"""Sending a request's messages to Kafka with a bound on bytes in flight.

The answer waits for Kafka's acknowledgement of every message (docs/design.md, invariant 1).
Past `max_inflight_bytes` waiting for acknowledgement, new requests are turned
away with 503 at once, so memory stays bounded whatever the load (invariant 6).
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime.kafka import AsyncProducer, OutgoingMessage, ProduceFailed


class Overloaded(Exception):
    """Too many bytes already wait for Kafka; the client should retry later."""


class Publisher:
    def __init__(self, producer: AsyncProducer, max_inflight_bytes: int) -> None:
        self.producer = producer
        self._limit = max_inflight_bytes
        self.inflight_bytes = 0

    async def publish(self, messages: Sequence[OutgoingMessage]) -> dict[tuple[str, int], int]:
        """Return when Kafka acknowledged all `messages`, with the offset each got by (topic,
        partition) (the last, where one partition got several).

        Raises `Overloaded` before sending anything when the in-flight bound is
        reached, and `ProduceFailed` when Kafka did not acknowledge them all.
        """
        size = sum(len(m[3] or b"") + len(m[2] or b"") for m in messages)
        if self.inflight_bytes and self.inflight_bytes + size > self._limit:
            raise Overloaded(f"{self.inflight_bytes} bytes already wait for Kafka")
        self.inflight_bytes += size
        try:
            batch = self.producer.send_batch(messages, record_offsets=True)
            await batch.wait()
            return batch.offsets
        finally:
            self.inflight_bytes -= size


__all__ = ["Overloaded", "ProduceFailed", "Publisher"]
