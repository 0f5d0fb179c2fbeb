"""Invariants 3 and 4 on the compacted topic itself: after Kafka's log cleaner has run,
reading `events` from the beginning yields exactly one record per live identity (its
newest version) and nothing for identities deleted by id or by filter.

The `events` topic of this test is created with settings that let the cleaner act
within seconds (small segments, any dirt cleanable, tombstones kept briefly). The
active segment is never cleaned, so the test keeps appending filler records of
another tenant while it waits, which rolls segments behind the records it checks.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from schemas.codec import decode
from schemas.deletes import VERSION_HEADER
from schemas.identity import Identity
from schemas.topics import EVENTS
from sluice.stack import ProcessStack
from tests.conftest import eventually, make_settings
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

FAST_CLEANING = {
    "segment.ms": "300",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "300",
    "min.compaction.lag.ms": "0",
}


def _create_fast_events_topic(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    topic = NewTopic(
        EVENTS.name(settings.topic_prefix),
        num_partitions=settings.partitions,
        replication_factor=1,
        config={**EVENTS.config(), **FAST_CLEANING},
    )
    admin.create_topics([topic])[topic.topic].result(30)
    ensure_topics(settings)


def _read_events(settings: Settings) -> list[tuple[bytes, bytes | None]]:
    """Every record on `events` from the beginning: (key, value)."""
    topic = EVENTS.name(settings.topic_prefix)
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": f"compaction-check-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
    })  # fmt: skip
    try:
        ends = {}
        for p in range(settings.partitions):
            ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records: list[tuple[bytes, bytes | None]] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 30
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is not None:
                    continue
                records.append((msg.key() or b"", msg.value()))
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        return records
    finally:
        consumer.close()


def _post(base: str, key: str, payload: Any) -> Answer:
    answer = call("POST", f"{base}/v1/events", json_body=payload, headers={"X-API-Key": key})
    assert answer.status == 202, answer.body
    return answer


def _delete(base: str, key: str, path: str) -> str:
    answer = call("DELETE", f"{base}{path}", headers={"X-API-Key": key})
    assert answer.status == 202, answer.body
    deletion_id: str = answer.json()["deletion_id"]
    return deletion_id


def _event(event_id: str, type_: str, n: int) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "source": "/compaction",
            "time": "2024-11-23T10:00:00Z", "data": {"n": n}}  # fmt: skip


def test_after_cleaning_events_holds_one_record_per_live_identity(
    kafka_bootstrap: str, database_url: str, new_key: Callable[..., str], tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, database_url)
    _create_fast_events_topic(settings)
    stack = ProcessStack(settings, tmp_path / "logs")
    stack.start()
    try:
        stack.wait_ready(timeout=120)
        tenant = f"cmp-{uuid.uuid4().hex[:8]}"
        key = new_key(tenant)
        base = stack.base_url
        live = [f"live-{i}" for i in range(6)]
        by_id = [f"by-id-{i}" for i in range(3)]
        by_filter = [f"by-filter-{i}" for i in range(5)]
        for n in (1, 2):  # two versions of everything: only the second may remain
            _post(base, key, [_event(i, "usage.kept", n) for i in live + by_id])
            _post(base, key, [_event(i, "usage.doomed", n) for i in by_filter])
        receipts = [_delete(base, key, f"/v1/events/{i}") for i in by_id]
        receipts.append(_delete(base, key, "/v1/events?type=usage.doomed"))
        for receipt in receipts:
            eventually(lambda r=receipt: _finished(base, key, r), timeout=90)
        stored = _stored_versions(database_url, tenant)
        assert set(stored) == set(live)

        filler = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        expected_filter_keys = {f"~deletion|{r}".encode() for r in receipts}

        def compacted() -> bool:
            _roll_segments(filler, settings)
            records = _read_events(settings)
            ours = [(k, v) for k, v in records if k.startswith(f"{tenant}|".encode())]
            counts = Counter(Identity.from_key(k).event_id for k, _ in ours)
            versions = {
                Identity.from_key(k).event_id: decode(v, "CanonicalEvent")[1]["version"]
                for k, v in ours if v is not None
            }  # fmt: skip
            leftovers = [k for k, _ in records if k in expected_filter_keys]
            return counts == Counter({i: 1 for i in live}) and versions == stored and not leftovers

        assert eventually(compacted, timeout=120, interval=1.0)
    finally:
        stack.stop()


def _finished(base: str, key: str, deletion_id: str) -> bool:
    answer = call("GET", f"{base}/v1/deletions/{deletion_id}", headers={"X-API-Key": key})
    return answer.status == 200 and answer.json()["status"] == "finished"


def _stored_versions(database_url: str, tenant: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return dict(
            conn.execute(
                "SELECT event_id, version FROM events WHERE tenant = %s", (tenant,)
            ).fetchall()
        )


def _roll_segments(producer: Producer, settings: Settings) -> None:
    """Append one record of another tenant per partition, so older segments can be cleaned."""
    topic = EVENTS.name(settings.topic_prefix)
    for p in range(settings.partitions):
        key = Identity("compaction-filler", "native", f"p{p}").key()
        producer.produce(topic, key=key, value=None, partition=p, headers=[(VERSION_HEADER, b"0")])
    producer.flush(10)
