"""Phase 2b: the stream with a data contract on every event's type, beside the same without.

Envelopes the door phases left in `ingest.raw` (up to `COPY_FACTOR` times `BENCH_EVENTS`
events' worth) are copied in one pass, byte for byte and partition for partition, to the
`ingest.raw` of two topic prefixes of this phase's own (`plain.` and `contracts.`), so
both hold exactly the same messages. Then, `BENCH_DOOR_ROUNDS` times: a fresh worker
drains the plain copy with no contract registered; a realistic JSON Schema (`CONTRACT`:
ten properties, required ones, enums, numeric bounds, patterns) is registered as
`native.usage.api_call` of every tenant whose events are there (the bench's events are
all of that type), and a fresh worker drains the other copy; the contract is soft-deleted
again. Each worker runs alone on the machine, as the stream phase's did, and reads its
copy from the start (a consumer group of its own). Every event satisfies the contract, so
each drain must write them all and dead-letter none, and a record read back must carry
the contract's schema id (proof it was applied), one of the plain copy's none.

The figure is the ratio of the two drains' events/s, from the round with the median
ratio (target >= 0.8), with the workers' CPU per event beside it: on a machine shared
with other work, CPU per event moves less than events/s.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from dataclasses import replace
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.context import BenchContext
from bench.watch import Offsets, wait_drained
from runtime.kafka import client_config, producer_config
from runtime.topic_admin import ensure_topics
from schemas.codec import decode
from schemas.topics import TopicNames
from sluice.keys_cli import create_key

SUBJECT = "native.usage.api_call"
COPY_FACTOR = 3
"""Each drain takes this many times `BENCH_EVENTS` events (or all there are): long enough
that a worker's start-up and the machine's other work weigh little, short enough that six
drains fit in the run."""
CONTRACT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "usage.api_call",
    "type": "object",
    "additionalProperties": False,
    "required": ["units", "customer", "region", "ok"],
    "properties": {
        "units": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
        "customer": {"type": "string", "pattern": "^c[0-9]{1,6}$", "maxLength": 7},
        "region": {
            "enum": ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1"]
        },
        "ok": {"type": "boolean"},
        "latency_ms": {"type": "integer", "minimum": 0, "maximum": 600_000},
        "plan": {"enum": ["free", "team", "enterprise"]},
        "cost_usd": {"type": "number", "minimum": 0, "exclusiveMaximum": 1_000_000},
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "tags": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 64}},
        "request_id": {"type": "string", "minLength": 8, "maxLength": 64},
    },
}
"""The data contract every benchmark event satisfies (`bench.events` writes five of its
ten properties: the other five are optional, as a real contract's would be)."""


def stream_with_contracts(ctx: BenchContext, tenants: list[str]) -> dict[str, Any]:
    """Alternate drains of two identical copies of `ingest.raw`, without and with the
    contract registered for `tenants`; the median round and every round."""
    plain, checked = (f"{ctx.settings.topic_prefix}{name}." for name in ("plain", "contracts"))
    for prefix in (plain, checked):
        ensure_topics(replace(ctx.settings, topic_prefix=prefix))
    targets = [TopicNames.for_prefix(p).ingest_raw for p in (plain, checked)]
    wanted = COPY_FACTOR * ctx.cfg.events
    events, envelopes = copy_envelopes(ctx, ctx.topics.ingest_raw, targets, wanted)
    keys = {tenant: create_key(ctx.settings, tenant, ["schemas:read", "schemas:write"])
            for tenant in tenants}  # fmt: skip
    rounds: list[dict[str, Any]] = []
    schema_ids: dict[str, int] = {}
    for n in range(max(ctx.cfg.door_rounds, 1)):
        without = _drain(ctx, plain, f"worker-plain-{n}", events)
        schema_ids = {tenant: _registry(ctx, key, "POST") for tenant, key in keys.items()}
        with_contracts = _drain(ctx, checked, f"worker-contracts-{n}", events)
        for key in keys.values():
            _registry(ctx, key, "DELETE")  # the next plain round runs with none
        rounds.append({"without": without, "with": with_contracts,
                       "ratio": _ratio(with_contracts, without, "per_second"),
                       "cpu_ratio": _cpu_ratio(without, with_contracts)})  # fmt: skip
    median = statistics.median_low(r["ratio"] for r in rounds)
    chosen = next(r for r in rounds if r["ratio"] == median)
    first_id = first_schema_id(ctx, TopicNames.for_prefix(checked).events)
    plain_id = first_schema_id(ctx, TopicNames.for_prefix(plain).events)
    return {
        **chosen["with"],
        "without": chosen["without"],
        "ratio": chosen["ratio"],
        "cpu_ratio": chosen["cpu_ratio"],
        "rounds": [_round_summary(r) for r in rounds],
        "envelopes_copied": envelopes,
        "dead_lettered": sum(r["with"]["dead_lettered"] for r in rounds),
        "schema_ids": schema_ids,
        "enforced": first_id is not None and first_id in schema_ids.values() and plain_id is None,
        "contract_properties": len(CONTRACT["properties"]),
    }


def _round_summary(found: dict[str, Any]) -> dict[str, Any]:
    return {"with": found["with"]["per_second"], "without": found["without"]["per_second"],
            "ratio": found["ratio"], "cpu_ratio": found["cpu_ratio"]}  # fmt: skip


def _drain(ctx: BenchContext, prefix: str, name: str, events: int) -> dict[str, Any]:
    """A fresh worker on `prefix`'s topics, timed until it wrote `events` more events."""
    topics = TopicNames.for_prefix(prefix)
    offsets = Offsets(client_config(ctx.settings), ctx.settings.partitions)
    before = offsets.end_total([topics.events])
    dlq_before = offsets.end_total([topics.dlq])
    try:
        ctx.procs.start(name, "worker", SLUICE_TOPIC_PREFIX=prefix,
                        SLUICE_WORKER_ID=f"bench-{ctx.tag}-{name}")  # fmt: skip
        drained = wait_drained(lambda: offsets.end_total([topics.events]) - before, events,
                               ctx.procs, ctx.cfg.phase_timeout)  # fmt: skip
        dead_lettered = offsets.end_total([topics.dlq]) - dlq_before
    finally:
        ctx.procs.stop(name)
        offsets.close()
    return {
        "worker": name,
        "events": drained.units,
        "seconds": drained.seconds,
        "per_second": drained.rate,
        "complete": drained.reached,
        "dead_lettered": dead_lettered,
        "cpu_us_per_unit": {n: 1e6 * s / max(drained.units, 1) for n, s in drained.cpu.items()},
    }


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return float(a[key] / b[key]) if b[key] else 0.0


def _cpu_ratio(without: dict[str, Any], with_contracts: dict[str, Any]) -> float | None:
    """The plain worker's CPU per event ÷ the contract-checking one's (< 1: contracts cost)."""
    plain = without["cpu_us_per_unit"].get(without["worker"])
    checked = with_contracts["cpu_us_per_unit"].get(with_contracts["worker"])
    return plain / checked if plain and checked else None


def _registry(ctx: BenchContext, key: str, method: str) -> int:
    """Register `CONTRACT` as the key's tenant's `SUBJECT` (POST; its schema id), or
    soft-delete the subject (DELETE)."""
    path = f"/schema-registry/subjects/{SUBJECT}" + ("/versions" if method == "POST" else "")
    body = json.dumps({"schema": json.dumps(CONTRACT), "schemaType": "JSON"}).encode()
    request = urllib.request.Request(
        f"{ctx.procs.base_url}{path}", data=body if method == "POST" else None, method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        found = json.loads(answer.read())
    return int(found["id"]) if method == "POST" else 0


def copy_envelopes(
    ctx: BenchContext, source: str, targets: list[str], events: int, timeout: float = 300.0
) -> tuple[int, int]:
    """Envelopes of `source` into the same partition of every one of `targets`, key, value
    and headers untouched, until they hold at least `events` events or `source` is read
    to its end (untimed); (events copied, envelopes copied)."""
    total = ctx.offsets.end_total([source])
    consumer = Consumer({**client_config(ctx.settings), "group.id": f"bench-copy-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    producer = Producer(producer_config(ctx.settings))
    copied = envelopes = 0
    deadline = time.monotonic() + timeout
    consumer.subscribe([source])
    try:
        while copied < events and envelopes < total and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                value = msg.value()
                if msg.error() is not None or value is None or copied >= events:
                    continue
                for target in targets:
                    _produce(producer, target, msg)
                copied += len(decode(value, "IngestEnvelope")[1]["items"])
                envelopes += 1
            producer.poll(0)
        producer.flush(120)
    finally:
        consumer.close()
    return copied, envelopes


def _produce(producer: Producer, target: str, msg: Any) -> None:
    while True:
        try:
            producer.produce(target, msg.value(), msg.key(), msg.partition(),
                             headers=msg.headers())  # fmt: skip
            return
        except BufferError:
            producer.poll(0.01)


def first_schema_id(ctx: BenchContext, topic: str, timeout: float = 30.0) -> int | None:
    """The `schema_id` of the first canonical event read from `topic`."""
    consumer = Consumer({**client_config(ctx.settings), "group.id": f"bench-peek-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            value = None if msg is None or msg.error() is not None else msg.value()
            if value is not None:
                found = decode(value, "CanonicalEvent")[1].get("schema_id")
                return found if isinstance(found, int) else None
    finally:
        consumer.close()
    return None
