"""The DLQ circuit breaker: stop a partition instead of dead-lettering the world.

When most of a partition's recent events are invalid, something upstream is
broken (a bad deploy of a producer, a schema change): dead-lettering everything
would bury the signal and flood the DLQ. After Arroyo's `DlqLimit`, each
partition keeps a sliding window of outcomes; it *trips* when the invalid share
of the last `window_events` events passes `max_invalid_ratio` (once at least
`min_events` were seen), or when more than `max_consecutive_invalid` invalid
events came in a row.

A tripped partition is paused. The envelope that tripped it, and every later
one of that partition already fetched, are *held*: neither dead-lettered nor
acknowledged, so their offsets are not committed (a crash re-reads them). After
`cooldown_seconds` the held envelopes are processed again in order with a fresh
window (half-open), and the partition resumes from just after them; if they
still trip it, it stays paused for another cool-down. Other partitions flow on.

`CircuitBreaker` is the pure decision; `BreakerGate` applies it to Faust-like
events and a consumer given from outside (pause, seek, resume), so both are
tested without Kafka.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class BreakerLimits:
    """When a partition trips, and for how long it stays paused."""

    max_invalid_ratio: float = 0.9
    """Trip above this invalid share of the window; 1.0 or more disables the rule."""
    min_events: int = 100
    """Events seen before the ratio applies."""
    window_events: int = 1000
    """About how many recent events the window holds (whole envelopes)."""
    max_consecutive_invalid: int = 1000
    """Trip when more invalid events than this came in a row; 0 disables the rule."""
    cooldown_seconds: float = 60.0
    """How long a tripped partition stays paused before its held envelopes are retried."""


@dataclass
class PartitionWindow:
    """Outcomes of a partition's recent envelopes, as (valid, invalid) event counts."""

    envelopes: deque[tuple[int, int]] = field(default_factory=deque)
    total: int = 0
    invalid: int = 0
    consecutive_invalid: int = 0

    def record(self, valid: int, invalid: int, window_events: int) -> None:
        """Add one envelope's outcome; an envelope with a valid event ends an invalid run."""
        self.envelopes.append((valid, invalid))
        self.total += valid + invalid
        self.invalid += invalid
        self.consecutive_invalid = (0 if valid else self.consecutive_invalid) + invalid
        while len(self.envelopes) > 1 and self.total - sum(self.envelopes[0]) >= window_events:
            old_valid, old_invalid = self.envelopes.popleft()
            self.total -= old_valid + old_invalid
            self.invalid -= old_invalid

    def trip_reason(self, limits: BreakerLimits) -> str | None:
        """Why this window trips the breaker, or None."""
        if 0 < limits.max_consecutive_invalid < self.consecutive_invalid:
            return f"{self.consecutive_invalid} invalid events in a row"
        if limits.max_invalid_ratio < 1.0 and self.total >= limits.min_events:
            ratio = self.invalid / self.total
            if ratio > limits.max_invalid_ratio:
                return f"{self.invalid} of the last {self.total} events invalid ({ratio:.0%})"
        return None


@dataclass
class OpenPartition(Generic[T]):
    """A tripped partition: since when, why, and the items held back."""

    since: float
    reason: str
    held: list[T] = field(default_factory=list)


class CircuitBreaker(Generic[K, T]):
    """Per-partition windows and open (tripped) partitions. Pure: time is passed in."""

    def __init__(self, limits: BreakerLimits) -> None:
        self.limits = limits
        self._windows: dict[K, PartitionWindow] = {}
        self.open: dict[K, OpenPartition[T]] = {}

    def is_open(self, partition: K) -> bool:
        return partition in self.open

    def record(self, partition: K, valid: int, invalid: int, now: float) -> str | None:
        """Add an envelope's outcome; return the trip reason when this trips the partition."""
        window = self._windows.setdefault(partition, PartitionWindow())
        window.record(valid, invalid, self.limits.window_events)
        reason = window.trip_reason(self.limits)
        if reason is not None:
            held = self.open[partition].held if partition in self.open else []
            self.open[partition] = OpenPartition(now, reason, held)
        return reason

    def hold(self, partition: K, item: T) -> None:
        self.open[partition].held.append(item)

    def due(self, now: float) -> list[K]:
        """Open partitions whose cool-down is over."""
        cooldown = self.limits.cooldown_seconds
        return [p for p, state in self.open.items() if now - state.since >= cooldown]

    def take_held(self, partition: K) -> list[T]:
        """Hand over what is held (the partition stays open) and start a fresh window."""
        state = self.open[partition]
        held, state.held = state.held, []
        self._windows[partition] = PartitionWindow()
        return held

    def close(self, partition: K) -> None:
        self.open.pop(partition, None)

    def status(self, now: float) -> dict[str, Any]:
        """What is tripped, as JSON-able data (for a status file, logs, metrics)."""
        return {
            "open": {
                _label(p): {"reason": s.reason, "seconds_open": round(now - s.since, 1),
                         "held": len(s.held)}
                for p, s in self.open.items()
            },
            "limits": vars(self.limits),
        }  # fmt: skip


def _label(partition: Any) -> str:
    """`topic/partition` for a Kafka topic-partition, else the key as text."""
    if hasattr(partition, "topic") and hasattr(partition, "partition"):
        return f"{partition.topic}/{partition.partition}"
    return str(partition)


class PartitionConsumer(Protocol):
    """The part of a Faust consumer the gate uses."""

    def pause_partitions(self, tps: Iterable[Any]) -> None: ...
    def resume_partitions(self, tps: Iterable[Any]) -> None: ...
    async def seek(self, partition: Any, offset: int) -> None: ...
    def assignment(self) -> set[Any]: ...


Outputs = Sequence[tuple[str, Any, Any, Any, Any]]
"""Kafka messages an envelope produced: (topic, partition, key, value, headers)."""


class BreakerGate:
    """Applies a `CircuitBreaker` to a stream of Faust events, one per envelope.

    Holding an event raises its message's reference count, so the stream's own
    acknowledgement does not release it; processing it later acknowledges it.
    """

    def __init__(
        self,
        limits: BreakerLimits,
        dlq_topic: str,
        consumer: Callable[[], PartitionConsumer | None],
        generation: Callable[[], int | None],
        report: Callable[[dict[str, Any]], None] = lambda _status: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.breaker: CircuitBreaker[Any, Any] = CircuitBreaker(limits)
        self._dlq = dlq_topic
        self._consumer = consumer
        self._generation = generation
        self._report = report
        self._clock = clock

    def holding(self, event: Any) -> bool:
        """True (and the event is held) when its partition is tripped."""
        tp = event.message.tp
        if not self.breaker.is_open(tp):
            return False
        event.message.incref()
        self.breaker.hold(tp, event)
        return True

    def admit(self, event: Any, outputs: Outputs) -> bool:
        """Record the envelope's outcome: True to send `outputs`, False when it tripped (held)."""
        invalid = sum(1 for m in outputs if m[0] == self._dlq)
        tp = event.message.tp
        reason = self.breaker.record(tp, len(outputs) - invalid, invalid, self._clock())
        if reason is None:
            return True
        cooldown = self.breaker.limits.cooldown_seconds
        log.error("circuit breaker tripped on %s at offset %d: %s; partition paused for %.0fs",
                  tp, event.message.offset, reason, cooldown)  # fmt: skip
        consumer = self._consumer()
        if consumer is not None:
            consumer.pause_partitions({tp})
        self.holding(event)
        self._changed()
        return False

    async def resume_due(
        self, outputs_of: Callable[[Any], Outputs], send: Callable[[list[Any]], Awaitable[None]]
    ) -> None:
        """Retry the held envelopes of partitions whose cool-down is over; resume if they pass."""
        for tp in self.breaker.due(self._clock()):
            await self._retry(tp, outputs_of, send)

    async def _retry(
        self, tp: Any, outputs_of: Callable[[Any], Outputs],
        send: Callable[[list[Any]], Awaitable[None]],
    ) -> None:  # fmt: skip
        consumer = self._consumer()
        last_offset: int | None = None
        while held := self.breaker.take_held(tp):
            current = [e for e in held if e.message.generation_id == self._generation()]
            messages: list[Any] = []
            done: list[Any] = []
            for event in current:
                outputs = outputs_of(event)
                if not self._admit_again(tp, event, outputs):
                    self.breaker.open[tp].held += current[len(done) + 1 :]
                    await self._send_and_ack(send, messages, done)
                    return
                messages += outputs
                done.append(event)
            await self._send_and_ack(send, messages, done)
            last_offset = max([e.message.offset for e in done], default=last_offset)
        self.breaker.close(tp)
        if consumer is not None and tp in consumer.assignment():
            if last_offset is not None:
                await consumer.seek(tp, last_offset + 1)
            consumer.resume_partitions({tp})
        log.warning("circuit breaker closed on %s; partition resumed", tp)
        self._changed()

    def _admit_again(self, tp: Any, event: Any, outputs: Outputs) -> bool:
        invalid = sum(1 for m in outputs if m[0] == self._dlq)
        reason = self.breaker.record(tp, len(outputs) - invalid, invalid, self._clock())
        if reason is None:
            return True
        log.error("circuit breaker tripped again on %s at offset %d: %s",
                  tp, event.message.offset, reason)  # fmt: skip
        self.breaker.hold(tp, event)
        self._changed()
        return False

    @staticmethod
    async def _send_and_ack(
        send: Callable[[list[Any]], Awaitable[None]], messages: list[Any], done: list[Any]
    ) -> None:
        await send(messages)
        for event in done:
            event.ack()

    def _changed(self) -> None:
        try:
            self._report(self.breaker.status(self._clock()))
        except OSError as exc:
            log.warning("could not report the circuit breaker's state: %s", exc)


def status_file_writer(path: Path) -> Callable[[dict[str, Any]], None]:
    """A `report` hook that rewrites `path` atomically with the breaker's JSON status."""

    def write(status: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**status, "pid": os.getpid(), "at": time.time()}, indent=1))
        tmp.replace(path)

    return write
