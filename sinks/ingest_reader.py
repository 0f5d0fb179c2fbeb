"""Reading envelopes of `ingest.raw` back by position: the sink's `EnvelopeReader`.

Used only when PostgreSQL refuses a version (see `sinks.unstorable`), never per event.
Each read is one short-lived consumer `assign`ed to exactly the wanted partitions and
offsets: it joins no group and commits nothing (the `group.id` is only what librdkafka
requires of a consumer). Offsets outside a partition's watermarks are answered at once;
the rest are fetched in offset order, seeking over gaps, until one deadline. Whatever
Kafka does not give by then is `Unavailable`, with the reason: a read never raises and
never waits longer than `timeout`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from runtime.kafka import client_config
from runtime.settings import Settings
from sinks.unstorable import Position, Unavailable

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2

_TRANSIENT = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
})  # fmt: skip
"""Errors worth waiting through (until the deadline): a leader being elected or moving, a
broker restarting. librdkafka does not flag all of them `retriable()` for every call."""


def _transient(error: KafkaError) -> bool:
    return bool(error.retriable()) or error.code() in _TRANSIENT


def reader_config(settings: Settings) -> dict[str, Any]:
    """A consumer that reads from where it is assigned and never commits."""
    return {
        **client_config(settings),
        "group.id": f"{settings.sink_group}.raw-reader",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",  # a record gone with retention is an error, not a jump
        "isolation.level": "read_committed",
        "client.id": "sluice-sink-raw-reader",
    }


class IngestRawReader:
    """Reads messages of `topic` by (partition, offset), within `timeout` seconds per read."""

    def __init__(self, config: dict[str, Any], topic: str, timeout: float) -> None:
        self._config = config
        self._topic = topic
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, topic: str) -> IngestRawReader:
        return cls(reader_config(settings), topic, settings.sink_raw_read_timeout_seconds)

    @property
    def topic(self) -> str:
        return self._topic

    def read(self, positions: Collection[Position]) -> dict[Position, bytes | Unavailable]:
        """The message value at each position, or why it cannot be had."""
        if not positions:
            return {}
        deadline = time.monotonic() + self._timeout
        try:
            consumer = Consumer(self._config)
        except KafkaException as exc:
            return {p: Unavailable(f"no consumer: {exc}") for p in positions}
        try:
            return _Read(consumer, self._topic, positions, deadline).run()
        finally:
            consumer.close()


class _Read:
    """One read: what is still wanted per partition (ascending offsets), and what was found."""

    def __init__(
        self, consumer: Consumer, topic: str, positions: Collection[Position], deadline: float
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._deadline = deadline
        self._wanted: dict[int, list[int]] = {}
        for partition, offset in sorted(positions):
            self._wanted.setdefault(partition, []).append(offset)
        self.result: dict[Position, bytes | Unavailable] = {}

    def run(self) -> dict[Position, bytes | Unavailable]:
        for partition in list(self._wanted):
            self._drop_outside_watermarks(partition)
        if self._wanted:
            starts = [TopicPartition(self._topic, p, o[0]) for p, o in self._wanted.items()]
            self._consumer.assign(starts)
        while self._wanted and (left := self._deadline - time.monotonic()) > 0:
            msg = self._consumer.poll(min(left, _POLL_SECONDS))
            if msg is not None:
                self._take(msg)
        for partition in list(self._wanted):
            self._give_up(partition, "no answer from Kafka in time")
        return self.result

    def _drop_outside_watermarks(self, partition: int) -> None:
        """Answer at once for offsets the partition does not hold (or a partition not there)."""
        marks = self._watermarks(partition)
        if isinstance(marks, str):
            self._give_up(partition, f"cannot read the partition: {marks}")
            return
        low, high = marks
        offsets = self._wanted[partition]
        for offset in offsets:
            if offset < low:
                self._missing(partition, offset, f"gone (the partition now starts at {low})")
            elif offset >= high:
                self._missing(partition, offset, f"not written (the partition ends at {high})")
        self._wanted[partition] = [o for o in offsets if low <= o < high]
        if not self._wanted[partition]:
            del self._wanted[partition]

    def _watermarks(self, partition: int) -> tuple[int, int] | str:
        """(low, high) offsets of `partition`, retried through transient errors (a leader
        being elected, say) until the deadline; or the error."""
        while True:
            left = self._deadline - time.monotonic()
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, partition), timeout=max(left, 0.001)
                )
                return low, high
            except KafkaException as exc:
                error = exc.args[0]
                if not _transient(error) or left <= _POLL_SECONDS:
                    return str(error.str())
            time.sleep(_POLL_SECONDS)

    def _take(self, msg: Message) -> None:
        partition, offset = msg.partition(), msg.offset()
        if partition is None or partition not in self._wanted:
            return  # a client-wide error (e.g. a broker down): the deadline bounds the wait
        error = msg.error()
        if error is not None:
            if not _transient(error):  # e.g. out of range: gone since the watermarks were read
                self._give_up(partition, f"cannot be fetched: {error.str()}")
            return
        offsets = self._wanted[partition]
        if offset is None:
            return
        while offsets and offsets[0] < offset:  # skipped: a transaction marker, say
            self._missing(partition, offsets.pop(0), "no record at this offset")
        if offsets and offsets[0] == offset:
            value = msg.value()
            self.result[(partition, offsets.pop(0))] = (
                value if value is not None else Unavailable("a null record")
            )
        if not offsets:
            del self._wanted[partition]
            self._consumer.pause([TopicPartition(self._topic, partition)])
        elif offsets[0] > offset + 1:
            self._consumer.seek(TopicPartition(self._topic, partition, offsets[0]))

    def _give_up(self, partition: int, reason: str) -> None:
        for offset in self._wanted.pop(partition, []):
            self._missing(partition, offset, reason)

    def _missing(self, partition: int, offset: int, reason: str) -> None:
        log.info("%s[%d]@%d: %s", self._topic, partition, offset, reason)
        self.result[(partition, offset)] = Unavailable(reason)
