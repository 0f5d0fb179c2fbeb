"""The circuit breaker's decisions, and the gate's hold / release / resume, with fakes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.breaker import (
    BreakerGate,
    BreakerKey,
    BreakerLimits,
    CircuitBreaker,
    open_rows,
    request_resume,
    status_file_writer,
    take_resume_request,
)

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
    tenant: str = "a"
    acked: bool = False

    def ack(self) -> None:
        self.message.refcount -= 1
        self.acked = self.message.refcount == 0

    @property
    def key(self) -> BreakerKey:
        return BreakerKey(self.message.tp, self.tenant, "native")


def _outputs(event: Any) -> list[Any]:
    return [("events" if event.valid else DLQ, 0, b"k", b"v", None)]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _gate(clock: Clock, reports: list[Any], limits: BreakerLimits = LIMITS) -> BreakerGate:
    return BreakerGate(limits, DLQ, lambda: 1, reports.append, clock)


def _feed(gate: BreakerGate, events: list[FakeEvent]) -> list[FakeEvent]:
    """What a Forwarder does for a batch: returns the events whose outputs were sent."""
    sent = []
    for event in events:
        if gate.holding(event.key, event):
            continue
        if gate.admit(event.key, event, _outputs(event)):
            sent.append(event)
    for event in events:  # the stream's own acknowledgement, after the batch
        event.ack()
    return sent


class Sent:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def __call__(self, messages: list[Any]) -> None:
        self.messages.extend(messages)


async def test_a_tripped_tenant_is_held_unacked_while_others_on_its_partition_flow() -> None:
    clock, reports = Clock(), []
    gate = _gate(clock, reports)
    garbage = [FakeEvent(FakeMessage("p0", 2 * i), valid=False, tenant="a") for i in range(12)]
    good = [FakeEvent(FakeMessage("p0", 2 * i + 1), valid=True, tenant="b") for i in range(12)]
    batch = [e for pair in zip(garbage, good, strict=True) for e in pair]
    sent = _feed(gate, batch)
    assert [e for e in sent if e.tenant == "a"] == garbage[:8]  # the 9th in a row trips
    assert [e for e in sent if e.tenant == "b"] == good  # same partition, another tenant
    assert all(e.acked for e in garbage[:8] + good)
    assert not any(e.acked for e in garbage[8:])  # held: their offsets cannot be committed
    assert len(gate.breaker.open[garbage[0].key].held) == 4
    status = reports[-1]["open"]["p0 a/native"]
    assert "9 invalid events in a row" in status["reason"]
    assert (status["tenant"], status["family"], status["partition"]) == ("a", "native", "p0")


async def test_after_the_cooldown_held_envelopes_are_sent_dead_letters_and_all() -> None:
    clock, reports = Clock(), []
    gate = _gate(clock, reports)
    events = [FakeEvent(FakeMessage("p0", i), valid=i < 1 or i > 9) for i in range(12)]
    _feed(gate, events)  # offsets 1..9 are garbage: trips at offset 9, holds 9..11
    sent = Sent()
    clock.now = 4.0
    await gate.release_due(_outputs, sent)
    assert sent.messages == [] and gate.breaker.open  # still cooling down
    clock.now = 5.0
    await gate.release_due(_outputs, sent)
    assert [m[0] for m in sent.messages] == [DLQ, "events", "events"]
    assert all(e.acked for e in events)
    assert reports[-1]["open"] == {}


async def test_still_garbage_after_the_cooldown_is_dead_lettered_and_nothing_stays_held() -> None:
    clock, reports = Clock(), []
    gate = _gate(clock, reports)
    events = [FakeEvent(FakeMessage("p0", i), valid=False) for i in range(30)]
    sent_now = _feed(gate, events)
    assert len(sent_now) == 8
    clock.now = 5.0
    sent = Sent()
    await gate.release_due(_outputs, sent)
    assert [m[0] for m in sent.messages] == [DLQ] * 22  # every held envelope, once
    assert gate.breaker.open == {} and all(e.acked for e in events)
    more = [FakeEvent(FakeMessage("p0", 30 + i), valid=False) for i in range(10)]
    assert len(_feed(gate, more)) == 8  # a fresh window: it may trip again, and holds again
    assert gate.breaker.open


async def test_a_tripped_key_holds_at_most_its_cap_then_lets_envelopes_flow() -> None:
    limits = BreakerLimits(max_invalid_ratio=1.0, max_consecutive_invalid=2, max_held_envelopes=3)
    gate = _gate(Clock(), [], limits)
    events = [FakeEvent(FakeMessage("p0", i), valid=False) for i in range(10)]
    sent = _feed(gate, events)
    assert [e.message.offset for e in sent] == [0, 1, 5, 6, 7, 8, 9]  # 2 trips; 2..4 held
    state = gate.breaker.open[events[0].key]
    assert len(state.held) == 3 and state.passed == 5


async def test_an_operator_resume_releases_at_once_and_only_what_was_named() -> None:
    clock, reports = Clock(), []
    gate = _gate(clock, reports)
    events = [FakeEvent(FakeMessage(p, i), valid=False, tenant=t)
              for i in range(9) for p, t in (("p0", "a"), ("p1", "b"))]  # fmt: skip
    _feed(gate, events)
    assert set(reports[-1]["open"]) == {"p0 a/native", "p1 b/native"}
    assert gate.resume({"p1 b/native", "p9 nobody/native"}) == ["p1 b/native"]
    sent = Sent()
    await gate.release_due(_outputs, sent)
    assert len(sent.messages) == 1 and set(reports[-1]["open"]) == {"p0 a/native"}
    assert gate.resume(None) == ["p0 a/native"]
    await gate.release_due(_outputs, sent)
    assert len(sent.messages) == 2 and reports[-1]["open"] == {}


def test_the_status_file_is_json(tmp_path: Path) -> None:
    write = status_file_writer(tmp_path / "state" / "breaker.json")
    write({"open": {"p0": {"reason": "r"}}})
    assert json.loads((tmp_path / "state" / "breaker.json").read_text())["open"]["p0"]


def test_a_resume_request_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "w.resume"
    assert take_resume_request(path) == (False, None)
    request_resume(path, ["p0 a/native"])
    assert take_resume_request(path) == (True, {"p0 a/native"})
    assert take_resume_request(path) == (False, None)
    request_resume(path, [])
    assert take_resume_request(path) == (True, None)
    path.write_text("{not json")
    assert take_resume_request(path) == (False, None) and not path.exists()


def test_open_rows_name_each_tenant_key_in_epoch_seconds() -> None:
    """What a worker records for the overview: a tripped key's partition number, family,
    envelopes held and trip time on the wall clock; never the undecodable key."""

    @dataclass(frozen=True)
    class TP:
        topic: str
        partition: int

    breaker: CircuitBreaker[BreakerKey, Any] = CircuitBreaker(LIMITS)
    key = BreakerKey(TP("raw", 3), "acme", "native")
    junk = BreakerKey(TP("raw", 1), "_undecodable", "")
    for k in (key, junk):
        assert breaker.record(k, 0, 9, now=100.0) is not None
        breaker.hold(k, object())
    rows = open_rows(breaker, now=130.0, wall_now=1_764_790_000.0)
    assert rows == [{"tenant": "acme", "partition": 3, "family": "native", "held": 1,
                     "since": 1_764_789_970.0, "reason": rows[0]["reason"]}]  # fmt: skip
    assert "in a row" in rows[0]["reason"]
    breaker.release(key)
    assert open_rows(breaker, now=131.0, wall_now=1_764_790_001.0) == []
