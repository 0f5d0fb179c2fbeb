"""The DLQ circuit breaker: hold a burst of garbage back and say so, without holding anyone else.

When most of a sender's recent events are invalid, something upstream is broken (a
bad deploy of a producer, a schema change): dead-lettering everything at once would
bury the signal. After Arroyo's `DlqLimit`, each *key* — a partition of `ingest.raw`,
a tenant and an API family — keeps a sliding window of outcomes; it *trips* when the
invalid share of the last `window_events` events passes `max_invalid_ratio` (once at
least `min_events` were seen), or when more than `max_consecutive_invalid` invalid
events came in a row.

A tripped key is held, not its partition: the envelope that tripped it and its later
envelopes are neither sent nor acknowledged (their offsets are not committed, so a
crash re-reads them), while other tenants' envelopes on the same partition flow on.
Order between envelopes does not matter downstream: each item's version is its
position in `ingest.raw`, and the sink lets only a higher version win.

After `cooldown_seconds` (or when an operator resumes it: `sluice worker breaker
resume`) the held envelopes are processed again and *everything* they produce is
sent, dead letters included: a failure that is still there after the cool-down is
deterministic (the bytes do not change), so holding it longer would only stop the
key forever. The key starts a fresh window. A key holds at most
`max_held_envelopes`; past that its envelopes flow (and are dead-lettered) even while
it is open, so memory stays bounded whatever one tenant sends.

`CircuitBreaker` is the pure decision; `BreakerGate` applies it to Faust-like events,
so both are tested without Kafka.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class BreakerLimits:
    """When a key trips, how long it is held, and how much it may hold."""

    max_invalid_ratio: float = 0.9
    """Trip above this invalid share of the window; 1.0 or more disables the rule."""
    min_events: int = 100
    """Events seen before the ratio applies."""
    window_events: int = 1000
    """About how many recent events the window holds (whole envelopes)."""
    max_consecutive_invalid: int = 1000
    """Trip when more invalid events than this came in a row; 0 disables the rule."""
    cooldown_seconds: float = 60.0
    """How long a tripped key's envelopes are held before they are processed and sent."""
    max_held_envelopes: int = 1000
    """Envelopes one tripped key may hold; later ones flow while it stays open."""


@dataclass(frozen=True)
class BreakerKey:
    """What a window counts: one tenant's events of one family on one partition."""

    partition: Any
    tenant: str
    family: str

    def label(self) -> str:
        """`topic/partition tenant/family`, as status, logs, metrics and `resume` show it."""
        return f"{_partition_label(self.partition)} {self.tenant}/{self.family}"


@dataclass
class Window:
    """Outcomes of a key's recent envelopes, as (valid, invalid) event counts."""

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
class Tripped(Generic[T]):
    """A tripped key: since when, why, what it holds, and how many envelopes passed the cap."""

    since: float
    reason: str
    held: list[T] = field(default_factory=list)
    passed: int = 0


class CircuitBreaker(Generic[K, T]):
    """Windows and tripped keys. Pure: time is passed in."""

    def __init__(self, limits: BreakerLimits) -> None:
        self.limits = limits
        self._windows: dict[K, Window] = {}
        self.open: dict[K, Tripped[T]] = {}

    def is_open(self, key: K) -> bool:
        return key in self.open

    def record(self, key: K, valid: int, invalid: int, now: float) -> str | None:
        """Add an envelope's outcome; return the trip reason when this trips the key."""
        window = self._windows.setdefault(key, Window())
        window.record(valid, invalid, self.limits.window_events)
        reason = window.trip_reason(self.limits)
        if reason is not None:
            self.open[key] = Tripped(now, reason)
        return reason

    def hold(self, key: K, item: T) -> bool:
        """Hold `item` for the tripped `key`; False (counted) when the key holds its most."""
        state = self.open[key]
        if len(state.held) >= self.limits.max_held_envelopes:
            state.passed += 1
            return False
        state.held.append(item)
        return True

    def due(self, now: float) -> list[K]:
        """Tripped keys whose cool-down is over."""
        cooldown = self.limits.cooldown_seconds
        return [k for k, state in self.open.items() if now - state.since >= cooldown]

    def resume_now(self, keys: Iterable[K]) -> None:
        """End the cool-down of `keys` (an operator's resume): they are due at once."""
        for key in keys:
            if key in self.open:
                self.open[key].since = -math.inf

    def release(self, key: K) -> list[T]:
        """Close `key` with a fresh window and hand over what it held."""
        self._windows.pop(key, None)
        state = self.open.pop(key, None)
        return [] if state is None else state.held

    def tripped(self) -> list[tuple[K, Tripped[T]]]:
        """The open keys and their state, safe to call from another thread (a key opened or
        closed meanwhile is seen at the next call)."""
        for _ in range(5):
            try:
                return list(self.open.items())
            except RuntimeError:  # the dict changed size while copied
                continue
        return []

    def status(self, now: float) -> dict[str, Any]:
        """What is tripped, as JSON-able data (for a status file, logs, metrics)."""
        return {
            "open": {_label(k): _describe(k, s, now) for k, s in self.open.items()},
            "limits": vars(self.limits),
        }


def open_rows(
    breaker: CircuitBreaker[BreakerKey, Any], now: float, wall_now: float
) -> list[dict[str, Any]]:
    """The tripped keys of tenants as plain rows (tenant, partition number, family, held,
    since in epoch seconds, reason), for the overview (`store.figures.BreakerRow`).
    `now` is the breaker's clock, `wall_now` the epoch time at the same moment."""
    rows = []
    for key, state in breaker.tripped():
        number = getattr(key.partition, "partition", key.partition)
        if not isinstance(number, int) or key.tenant.startswith("_"):
            continue  # the undecodable envelopes' key belongs to no tenant
        since = wall_now - (now - state.since) if math.isfinite(state.since) else wall_now
        rows.append({"tenant": key.tenant, "partition": number, "family": key.family,
                     "held": len(state.held), "since": since, "reason": state.reason})  # fmt: skip
    return rows


def _describe(key: Any, state: Tripped[Any], now: float) -> dict[str, Any]:
    seconds = now - state.since if math.isfinite(state.since) else 0.0
    found: dict[str, Any] = {"reason": state.reason, "seconds_open": round(seconds, 1),
                             "held": len(state.held), "passed": state.passed}  # fmt: skip
    if isinstance(key, BreakerKey):
        found |= {"partition": _partition_label(key.partition), "tenant": key.tenant,
                  "family": key.family}  # fmt: skip
    return found


def _label(key: Any) -> str:
    return key.label() if isinstance(key, BreakerKey) else str(key)


def _partition_label(partition: Any) -> str:
    """`topic/partition` for a Kafka topic-partition, else the value as text."""
    if hasattr(partition, "topic") and hasattr(partition, "partition"):
        return f"{partition.topic}/{partition.partition}"
    return str(partition)


Outputs = Sequence[tuple[str, Any, Any, Any, Any]]
"""Kafka messages an envelope produced: (topic, partition, key, value, headers)."""


class BreakerGate:
    """Applies a `CircuitBreaker` to Faust events, one per envelope, by `BreakerKey`.

    Holding an event raises its message's reference count, so the stream's own
    acknowledgement does not release it; releasing it later acknowledges it.
    """

    def __init__(
        self,
        limits: BreakerLimits,
        dlq_topic: str,
        generation: Callable[[], int | None],
        report: Callable[[dict[str, Any]], None] = lambda _status: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.breaker: CircuitBreaker[BreakerKey, Any] = CircuitBreaker(limits)
        self._dlq = dlq_topic
        self._generation = generation
        self._report = report
        self._clock = clock

    def holding(self, key: BreakerKey, event: Any) -> bool:
        """True (and the event is held) when its key is tripped and may hold more."""
        if not self.breaker.is_open(key) or not self.breaker.hold(key, event):
            return False
        event.message.incref()
        return True

    def admit(self, key: BreakerKey, event: Any, outputs: Outputs) -> bool:
        """Record the envelope's outcome: True to send `outputs`, False when it tripped (held)."""
        if self.breaker.is_open(key):  # past the hold cap (see `holding`): it flows
            return True
        invalid = sum(1 for m in outputs if m[0] == self._dlq)
        reason = self.breaker.record(key, len(outputs) - invalid, invalid, self._clock())
        if reason is None:
            return True
        cooldown = self.breaker.limits.cooldown_seconds
        log.error("circuit breaker tripped on %s at offset %d: %s; its envelopes are held "
                  "for %.0fs, then dead-lettered", key.label(), event.message.offset, reason,
                  cooldown)  # fmt: skip
        self.holding(key, event)
        self._changed()
        return False

    def resume(self, labels: set[str] | None) -> list[str]:
        """End the cool-down of the keys with `labels` (None: all); the labels found."""
        keys = [k for k in self.breaker.open if labels is None or k.label() in labels]
        self.breaker.resume_now(keys)
        return [k.label() for k in keys]

    async def release_due(
        self, outputs_of: Callable[[Any], Outputs], send: Callable[[list[Any]], Awaitable[None]]
    ) -> None:
        """Process and send what the keys past their cool-down held; close those keys."""
        for key in self.breaker.due(self._clock()):
            held = self.breaker.release(key)
            # After a rebalance, a held message may belong to another worker now: it was
            # never acknowledged here, so its new owner reads it again.
            current = [e for e in held if e.message.generation_id == self._generation()]
            messages = [m for event in current for m in outputs_of(event)]
            await send(messages)
            for event in current:
                event.ack()
            dead = sum(1 for m in messages if m[0] == self._dlq)
            log.warning("circuit breaker released %s: %d held envelopes sent, %d dead letters",
                        key.label(), len(current), dead)  # fmt: skip
            self._changed()

    def _changed(self) -> None:
        try:
            self._report(self.breaker.status(self._clock()))
        except OSError as exc:
            log.warning("could not report the circuit breaker's state: %s", exc)


def status_path(state_dir: Path, worker_id: str) -> Path:
    """Where a worker writes its breaker's status (read by `sluice worker breaker status`)."""
    return state_dir / f"breaker-{worker_id}.json"


def resume_path(state_dir: Path, worker_id: str) -> Path:
    """Where `sluice worker breaker resume` asks a worker to release tripped keys."""
    return state_dir / f"breaker-{worker_id}.resume"


def status_file_writer(path: Path) -> Callable[[dict[str, Any]], None]:
    """A `report` hook that rewrites `path` atomically with the breaker's JSON status."""

    def write(status: dict[str, Any]) -> None:
        _write_json(path, {**status, "pid": os.getpid(), "at": time.time()})

    return write


def request_resume(path: Path, labels: Sequence[str]) -> None:
    """Ask the worker reading `path` to release `labels` (empty: every tripped key)."""
    _write_json(path, {"labels": list(labels) or None})


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Replace `path` with `value` as JSON atomically: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def take_resume_request(path: Path) -> tuple[bool, set[str] | None]:
    """(whether a resume was asked, its labels or None for all); the request is consumed."""
    try:
        asked = json.loads(path.read_text())
    except FileNotFoundError:
        return False, None
    except ValueError:
        log.warning("ignoring an unreadable breaker resume request at %s", path)
        path.unlink(missing_ok=True)
        return False, None
    path.unlink(missing_ok=True)
    labels = asked.get("labels") if isinstance(asked, dict) else None
    return True, None if labels is None else {str(label) for label in labels}
