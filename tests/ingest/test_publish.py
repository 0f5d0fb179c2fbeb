"""Invariant 6 at the door: bytes waiting for Kafka are bounded; past the bound a request is
turned away at once (503 via `Overloaded`) instead of queueing without limit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ingest.publish import Overloaded, Publisher
from runtime.kafka import OutgoingMessage


class _HeldDelivery:
    def __init__(self, release: asyncio.Event) -> None:
        self._release = release
        self.offsets: dict[tuple[str, int], int] = {}

    async def wait(self) -> None:
        await self._release.wait()


class _SlowKafka:
    """Acknowledges nothing until `release` is set (the accounting is what is under test)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[Sequence[OutgoingMessage]] = []

    def send_batch(
        self, messages: Sequence[OutgoingMessage], *, record_offsets: bool = False
    ) -> _HeldDelivery:
        self.sent.append(messages)
        return _HeldDelivery(self.release)


def _message(size: int) -> OutgoingMessage:
    return ("t.ingest.raw", 0, None, b"x" * size, None)


async def test_bytes_waiting_for_kafka_are_bounded() -> None:
    kafka = _SlowKafka()
    publisher = Publisher(kafka, max_inflight_bytes=1000)  # type: ignore[arg-type]
    first = asyncio.create_task(publisher.publish([_message(800)]))
    await asyncio.sleep(0)
    assert publisher.inflight_bytes == 800

    with pytest.raises(Overloaded):  # at once: unbounded, it would wait for Kafka forever
        await asyncio.wait_for(publisher.publish([_message(300)]), 10)
    assert len(kafka.sent) == 1  # the refused request sent nothing

    kafka.release.set()
    await first
    assert publisher.inflight_bytes == 0
    await publisher.publish([_message(300)])
    assert len(kafka.sent) == 2


async def test_one_request_larger_than_the_bound_still_passes_when_nothing_waits() -> None:
    kafka = _SlowKafka()
    kafka.release.set()
    publisher = Publisher(kafka, max_inflight_bytes=100)  # type: ignore[arg-type]
    await publisher.publish([_message(500)])
    assert publisher.inflight_bytes == 0
