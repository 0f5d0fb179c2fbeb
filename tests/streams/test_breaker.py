"""The circuit breaker's decisions, and the gate's hold / pause / retry / resume with fakes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.breaker import BreakerGate, BreakerLimits, CircuitBreaker, status_file_writer

LIMITS = BreakerLimits(max_invalid_ratio=0.5, min_events=10, window_events=20,
                       max_consecutive_invalid=8, cooldown_seconds=5)  # fmt: skip
DLQ = "dlq"


def test_ratio_trips_only_past_the_minimum_window() -> None:
    breaker: CircuitBreaker[int, Any] = CircuitBreaker(
        BreakerLimits(max_invalid_ratio=0.5, min_events=10, max_consecutive_invalid=0)
    )
    assert breaker.record(0, 1, 3, now=0) is None  # 75% invalid, but only 4 events seen
    assert breaker.record(0, 2, 2, now=0) is None  # 5 of 8
    reason = breaker.record(0, 0, 2, now=0)  # 7 of 10
    assert reason is not None and "70%" in reason and breaker.is_open(0)
    assert not breaker.is_open(1)


def test_a_healthy_window_forgets_old_garbage() -> None:
    breaker: CircuitBreaker[int, Any] = CircuitBreaker(
        BreakerLimits(max_invalid_ratio=0.5, min_events=10, window_events=20,
                      max_consecutive_invalid=0)
    )  # fmt: skip
    assert breaker.record(0, 0, 4, now=0) is None  # below the minimum
    for _ in range(30):
        assert breaker.record(0, 1, 0, now=0) is None
    assert breaker.record(0, 0, 9, now=0) is None  # 9 of the last 20 or so: fine


def test_consecutive_invalid_trips_and_a_valid_event_resets_the_run() -> None:
    breaker: CircuitBreaker[int, Any] = CircuitBreaker(
        BreakerLimits(max_invalid_ratio=1.0, max_consecutive_invalid=3)
    )
    for _ in range(3):
        assert breaker.record(0, 0, 1, now=0) is None
    assert breaker.record(0, 1, 0, now=0) is None
    for _ in range(3):
        assert breaker.record(0, 0, 1, now=0) is None
    assert breaker.record(0, 0, 1, now=0) == "4 invalid events in a row"


@dataclass(eq=False)
class FakeMessage:
    tp: str
    offset: int
    generation_id: int = 1
    refcount: int = 1

    def incref(self) -> None:
        self.refcount += 1


@dataclass(eq=False)
class FakeEvent:
    message: FakeMessage
    valid: bool
    acked: bool = False

    def ack(self) -> None:
        self.message.refcount -= 1
        self.acked = self.message.refcount == 0


@dataclass
class FakeConsumer:
    paused: set[str] = field(default_factory=set)
    seeks: list[tuple[str, int]] = field(default_factory=list)

    def pause_partitions(self, tps: Iterable[str]) -> None:
        self.paused |= set(tps)

    def resume_partitions(self, tps: Iterable[str]) -> None:
        self.paused -= set(tps)

    async def seek(self, partition: str, offset: int) -> None:
        self.seeks.append((partition, offset))

    def assignment(self) -> set[str]:
        return {"p0", "p1"}


def _outputs(event: Any) -> list[Any]:
    return [("events" if event.valid else DLQ, 0, b"k", b"v", None)]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _gate(consumer: FakeConsumer, clock: Clock, reports: list[Any]) -> BreakerGate:
    return BreakerGate(LIMITS, DLQ, lambda: consumer, lambda: 1, reports.append, clock)


def _feed(gate: BreakerGate, events: list[FakeEvent]) -> list[FakeEvent]:
    """What a Forwarder does for a batch: returns the events whose outputs were sent."""
    sent = []
    for event in events:
        if gate.holding(event):
            continue
        if gate.admit(event, _outputs(event)):
            sent.append(event)
    for event in events:  # the stream's own acknowledgement, after the batch
        event.ack()
    return sent


async def test_a_tripped_partition_is_paused_held_unacked_while_others_flow() -> None:
    consumer, clock, reports = FakeConsumer(), Clock(), []
    gate = _gate(consumer, clock, reports)
    garbage = [FakeEvent(FakeMessage("p0", i), valid=False) for i in range(12)]
    good = [FakeEvent(FakeMessage("p1", i), valid=True) for i in range(12)]
    batch = [e for pair in zip(garbage, good, strict=True) for e in pair]
    sent = _feed(gate, batch)
    assert sent.count(garbage[0]) == 1 and garbage[8] not in sent  # the 9th in a row trips
    assert [e for e in sent if e.message.tp == "p0"] == garbage[:8]
    assert [e for e in sent if e.message.tp == "p1"] == good
    assert consumer.paused == {"p0"}
    assert all(e.acked for e in garbage[:8] + good)
    assert not any(e.acked for e in garbage[8:])  # held: their offsets cannot be committed
    assert len(gate.breaker.open["p0"].held) == 4
    assert "9 invalid events in a row" in reports[-1]["open"]["p0"]["reason"]


async def test_after_the_cooldown_held_envelopes_are_retried_then_the_partition_resumes() -> None:
    consumer, clock, reports = FakeConsumer(), Clock(), []
    gate = _gate(consumer, clock, reports)
    events = [FakeEvent(FakeMessage("p0", i), valid=i < 1 or i > 9) for i in range(14)]
    _feed(gate, events[:12])  # offsets 1..9 are garbage: trips at offset 9, holds 9..11
    sent: list[Any] = []

    async def send(messages: list[Any]) -> None:
        sent.extend(messages)

    clock.now = 4.0
    await gate.resume_due(_outputs, send)
    assert sent == [] and consumer.paused == {"p0"}  # still cooling down
    clock.now = 5.0
    await gate.resume_due(_outputs, send)
    assert [m[0] for m in sent] == [DLQ, "events", "events"]  # fresh window: 9 is one invalid
    assert all(e.acked for e in events[:12])
    assert consumer.paused == set() and consumer.seeks == [("p0", 12)]
    assert reports[-1]["open"] == {}


async def test_still_garbage_after_the_cooldown_stays_paused_and_held_in_order() -> None:
    consumer, clock, reports = FakeConsumer(), Clock(), []
    gate = _gate(consumer, clock, reports)
    events = [FakeEvent(FakeMessage("p0", i), valid=False) for i in range(30)]
    _feed(gate, events)
    clock.now = 5.0

    async def send(messages: list[Any]) -> None:
        return None

    await gate.resume_due(_outputs, send)
    assert consumer.paused == {"p0"} and consumer.seeks == []
    held = gate.breaker.open["p0"].held
    assert [e.message.offset for e in held] == list(range(16, 30))
    assert all(e.acked for e in events[:16]) and not any(e.acked for e in events[16:])


def test_the_status_file_is_json(tmp_path: Path) -> None:
    write = status_file_writer(tmp_path / "state" / "breaker.json")
    write({"open": {"p0": {"reason": "r"}}})
    assert json.loads((tmp_path / "state" / "breaker.json").read_text())["open"]["p0"]
