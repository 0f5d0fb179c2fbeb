"""Phase 2b: the stream again, with a data contract on every event's type.

The stream phase (`bench.drain.stream_stage`) measures the worker on what the door
phases left in `ingest.raw`, with no contract registered. This phase copies those
envelopes, byte for byte and partition for partition, to the `ingest.raw` of a topic
prefix of its own, registers a realistic JSON Schema (`CONTRACT`: ten properties,
required ones, an enum, numeric bounds, patterns) as `native.usage.api_call` of every
tenant whose events are there (the bench's events are all of that type), and times a
second worker, alone on the machine as the first was, until it wrote them all. Every event
satisfies the contract, so the output counts must match and nothing is dead-lettered; one
record read back must carry the contract's schema id (proof it was applied).

The figure is the ratio of this phase's events/s to the first stream phase's, in the same
run: what enforcing contracts costs the stream (target ≥ 0.8).
"""

from __future__ import annotations

import json
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


def stream_with_contracts(ctx: BenchContext, events: int, tenants: list[str]) -> dict[str, Any]:
    """Copy `ingest.raw` to a prefix of its own, register the contract for `tenants`, and
    time a worker draining the copy; its events/s beside the stream phase's."""
    prefix = f"{ctx.settings.topic_prefix}contracts."
    topics = TopicNames.for_prefix(prefix)
    ensure_topics(replace(ctx.settings, topic_prefix=prefix))
    copied = copy_topic(ctx, ctx.topics.ingest_raw, topics.ingest_raw)
    schema_ids = {tenant: register_contract(ctx, tenant) for tenant in tenants}
    offsets = Offsets(client_config(ctx.settings), ctx.settings.partitions)
    name = "worker-contracts"
    try:
        ctx.procs.start(name, "worker", SLUICE_TOPIC_PREFIX=prefix,
                        SLUICE_WORKER_ID=f"bench-{ctx.tag}-streams-contracts")  # fmt: skip
        drained = wait_drained(lambda: offsets.end_total([topics.events]), events, ctx.procs,
                               ctx.cfg.phase_timeout)  # fmt: skip
        dead_lettered = offsets.end_total([topics.dlq])
    finally:
        ctx.procs.stop(name)
        offsets.close()
    return {
        "events": drained.units,
        "envelopes_copied": copied,
        "seconds": drained.seconds,
        "per_second": drained.rate,
        "complete": drained.reached,
        "dead_lettered": dead_lettered,
        "schema_ids": schema_ids,
        "enforced": first_schema_id(ctx, topics.events) in schema_ids.values(),
        "contract_properties": len(CONTRACT["properties"]),
        "cpu_us_per_unit": {n: 1e6 * s / max(drained.units, 1) for n, s in drained.cpu.items()},
    }


def register_contract(ctx: BenchContext, tenant: str) -> int:
    """Register `CONTRACT` as `tenant`'s `SUBJECT` through the registry; its schema id."""
    key = create_key(ctx.settings, tenant, ["schemas:read", "schemas:write"])
    body = json.dumps({"schema": json.dumps(CONTRACT), "schemaType": "JSON"}).encode()
    request = urllib.request.Request(
        f"{ctx.procs.base_url}/schema-registry/subjects/{SUBJECT}/versions", data=body,
        method="POST", headers={"Authorization": f"Bearer {key}",
                                "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        registered: int = json.loads(answer.read())["id"]
    return registered


def copy_topic(ctx: BenchContext, source: str, target: str, timeout: float = 300.0) -> int:
    """Every message of `source` into the same partition of `target`, key, value and
    headers untouched (untimed); how many were copied."""
    total = ctx.offsets.end_total([source])
    kafka = client_config(ctx.settings)
    consumer = Consumer({**kafka, "group.id": f"bench-copy-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    producer = Producer(producer_config(ctx.settings))
    done, deadline = 0, time.monotonic() + timeout
    consumer.subscribe([source])
    try:
        while done < total and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                _produce(producer, target, msg)
                done += 1
            producer.poll(0)
        producer.flush(120)
    finally:
        consumer.close()
    return done


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
