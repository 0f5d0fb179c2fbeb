"""The worker's CPU per event, step by step, without Kafka: `make bench-stream-cpu`.

Builds envelopes the way the door does (the bench's native events, requests of
`BENCH_BATCH` events split over `SLUICE_PARTITIONS` partitions by the door's own plan),
then times with `time.process_time()` what `streams.app.Forwarder` does per envelope:
the Python path (fastavro decode, `process_envelope`, `to_messages`) step by step, the
compiled path (`streams.compiled.forward_compiled`), both again with the bench's data
contract (`bench.contracts.CONTRACT`) in force for the bench tenant, and what queueing
the results with confluent-kafka's `produce()` costs per message, with and without a
delivery callback (the producer points at a closed port on 127.0.0.1: messages are only
queued, never sent).
Deterministic enough to compare two builds on a shared machine: best of `ROUNDS`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from bench.contracts import CONTRACT, SUBJECT
from bench.events import body
from ingest.plan import RequestContext, plan_native_body
from schemas.codec import decode
from schemas.contracts import Contract, Contracts, compile_schema
from schemas.topics import TopicNames
from streams.compiled import COMPILED, forward_compiled
from streams.outputs import to_messages
from streams.process import Position, process_envelope

ROUNDS = 5
TOPICS = TopicNames.for_prefix("bench.")
TENANT = "bench"
WITH_CONTRACT = Contracts(
    {(TENANT, SUBJECT): Contract(SUBJECT, 1, 1001, compile_schema(json.dumps(CONTRACT)))}
)
"""The bench's contract in force for the bench tenant (every bench event satisfies it)."""


def envelopes(events: int, batch: int, partitions: int) -> list[tuple[int, bytes]]:
    """(partition, envelope) for `events` bench events sent in requests of `batch`."""
    out: list[tuple[int, bytes]] = []
    for start in range(0, events, batch):
        ctx = RequestContext(TENANT, "native", {}, "application/json", datetime.now(UTC))
        plan = plan_native_body(ctx, body("cpu", start, batch), TOPICS, partitions, batch)
        assert plan is not None, "the bench body must take the door's compiled path"
        out += [(m[1], m[3]) for m in plan.messages if m[3] is not None]
    return out


def best_of(work: Callable[[], Any]) -> float:
    """The least CPU seconds `work` took over `ROUNDS` runs (what it returns, when it times
    itself: a float)."""
    best = float("inf")
    for _ in range(ROUNDS):
        began = time.process_time()
        timed = work()
        best = min(best, timed if isinstance(timed, float) else time.process_time() - began)
    return best


def measure(events: int, batch: int, partitions: int) -> dict[str, float]:
    """CPU µs per event of each step, over `events` events."""
    envs = envelopes(events, batch, partitions)
    at = [Position(TOPICS.ingest_raw, p, offset) for offset, (p, _) in enumerate(envs)]
    decoded = [decode(v, "IngestEnvelope")[1] for _, v in envs]
    pairs = list(zip(decoded, at, strict=True))
    processed = [(process_envelope(e, a), a.partition) for e, a in pairs]
    messages = [m for p, partition in processed for m in to_messages(p, partition, TOPICS)]
    steps: dict[str, Callable[[], Any]] = {
        "python: fastavro decode": lambda: [decode(v, "IngestEnvelope") for _, v in envs],
        "python: process_envelope": lambda: [process_envelope(e, a) for e, a in pairs],
        "python: to_messages": lambda: [to_messages(p, n, TOPICS) for p, n in processed],
        "contract, python: process_envelope": lambda: [
            process_envelope(e, a, WITH_CONTRACT) for e, a in pairs
        ],
    }
    if COMPILED:
        raw = [(v, a.offset, a.partition) for (_, v), a in zip(envs, at, strict=True)]
        steps["compiled: forward_compiled"] = lambda: [
            forward_compiled(v, offset, partition, TOPICS) for v, offset, partition in raw
        ]
        steps["contract, compiled: forward_compiled"] = lambda: [
            forward_compiled(v, offset, partition, TOPICS, WITH_CONTRACT)
            for v, offset, partition in raw
        ]
    steps["produce(), a callback per message"] = lambda: _produce(messages, callback=True)
    steps["produce(), no callback"] = lambda: _produce(messages, callback=False)
    return {name: best_of(work) / len(messages) * 1e6 for name, work in steps.items()}


def _produce(messages: list[Any], *, callback: bool) -> float:
    """CPU seconds of queueing `messages` (the producer's set-up and teardown not counted)."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "queue.buffering.max.messages":
                         2_000_000, "queue.buffering.max.kbytes": 2_000_000, "linger.ms": 60_000,
                         "enable.idempotence": True, "acks": "all", "log_level": 0})  # fmt: skip
    produce = producer.produce

    def acknowledged(err: Any, msg: Any) -> None:
        pass

    began = time.process_time()
    for topic, partition, key, value, headers in messages:
        if callback and headers:
            produce(topic, value, key, partition, acknowledged, headers=list(headers))
        elif callback:
            produce(topic, value, key, partition, acknowledged)
        else:
            produce(topic, value, key, partition)
    elapsed = time.process_time() - began
    producer.purge()
    return elapsed


def main() -> None:
    events = int(os.environ.get("BENCH_EVENTS", "100000"))
    batch = int(os.environ.get("BENCH_BATCH", "255"))
    partitions = int(os.environ.get("SLUICE_PARTITIONS", "4"))
    print(f"stream CPU per event: {events} events, requests of {batch}, {partitions} partitions "
          f"(best of {ROUNDS}; compiled path {'built' if COMPILED else 'NOT built'})")  # fmt: skip
    figures = measure(events, batch, partitions)
    for name, micros in figures.items():
        print(f"  {name:<36} {micros:6.2f} µs/event")
    python = sum(v for k, v in figures.items() if k.startswith("python:"))
    print(f"  {'python path, all steps':<36} {python:6.2f} µs/event")


if __name__ == "__main__":
    main()
