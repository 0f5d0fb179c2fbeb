"""The spine end to end on real Kafka and PostgreSQL: HTTP → Avro on Kafka → Faust →
compacted topic or dead-letter topic → PostgreSQL → HTTP."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from schemas.codec import encode
from schemas.identity import Identity, partition_for
from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def _event(event_id: str | None = None, **data: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "usage.api_call", "source": "/tests", "time": "2024-11-23T10:00:00Z",
        "data": data or {"units": 1},
    }  # fmt: skip
    if event_id is not None:
        event["id"] = event_id
    return event


def _post(stack: ProcessStack, key: str, payload: Any = None, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> Answer:  # fmt: skip
    sent = {"X-API-Key": key, **(headers or {})}
    if body is None:
        return call("POST", f"{stack.base_url}/v1/events", json_body=payload, headers=sent)
    sent.setdefault("Content-Type", "application/json")
    return call("POST", f"{stack.base_url}/v1/events", body=body, headers=sent)


def _get(stack: ProcessStack, key: str, path: str) -> Answer:
    return call("GET", f"{stack.base_url}{path}", headers={"X-API-Key": key})


def _dead_letter(database_url: str, dead_letter_id: str) -> dict[str, Any] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT raw, reasons, stage, tenant, event_id FROM dead_letters"
            " WHERE dead_letter_id = %s",
            (dead_letter_id,),
        ).fetchone()
    if row is None:
        return None
    return {"raw": bytes(row[0]), "reasons": row[1], "stage": row[2], "tenant": row[3],
            "event_id": row[4]}  # fmt: skip


def test_a_valid_event_becomes_queryable(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key = new_key("acme")
    event_id = f"e-{uuid.uuid4()}"
    answer = _post(stack, key, _event(event_id, units=3))
    assert answer.status == 202, answer.body
    assert answer.json()["ids"] == [event_id]

    found = eventually(lambda: _get(stack, key, f"/v1/events/{event_id}").status == 200)
    assert found
    event = _get(stack, key, f"/v1/events/{event_id}").json()
    assert event["data"] == {"units": 3}
    assert event["time"].startswith("2024-11-23T10:00:00")
    listing = _get(stack, key, "/v1/events?type=usage.api_call&source=/tests&limit=1000").json()
    assert event_id in [e["id"] for e in listing["events"]]


def test_an_array_with_ids_assigned_at_the_door_and_gzip(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("gzipper")
    body = gzip.compress(json.dumps([_event(None, n=i) for i in range(20)]).encode())
    answer = _post(stack, key, body=body, headers={"Content-Encoding": "gzip"})
    assert answer.status == 202, answer.body
    ids = answer.json()["ids"]
    assert len(set(ids)) == 20

    def all_there() -> bool:
        page = _get(stack, key, "/v1/events?limit=100").json()["events"]
        return {e["id"] for e in page} == set(ids)

    assert eventually(all_there)


def test_an_invalid_event_is_a_dead_letter_byte_for_byte(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("acme")
    raw = b'{"id": "bad-1",  "type": 42,\n "data": "nope"}'
    answer = _post(stack, key, body=raw)
    assert answer.status == 400
    (rejected,) = answer.json()["rejected"]
    stored = eventually(lambda: _dead_letter(database_url, rejected["dead_letter_id"]))
    assert stored["raw"] == raw
    assert stored["stage"] == "door" and stored["tenant"] == "acme"
    codes = {r["code"] for r in stored["reasons"]}
    assert {"wrong_type", "missing_field"} <= codes


def test_a_malformed_body_is_one_dead_letter(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("acme")
    raw = b'[{"type": "x"}, this is not json'
    answer = _post(stack, key, body=raw)
    assert answer.status == 400
    assert answer.headers["Content-Type"].startswith("application/json")
    (rejected,) = answer.json()["rejected"]
    stored = eventually(lambda: _dead_letter(database_url, rejected["dead_letter_id"]))
    assert stored["raw"] == raw
    assert stored["reasons"][0]["code"] == "unsplittable_body"


def test_the_stream_dead_letters_what_kafka_native_producers_send(
    stack: ProcessStack, database_url: str
) -> None:
    """The stream re-validates: an invalid item written straight to ingest.raw is dead-lettered."""
    settings = stack.settings
    event_id = f"native-{uuid.uuid4()}"
    raw = b'{"type": "t", "source": "s", "time": "not a time", "data": {}}'
    envelope = {
        "request_id": "kafka-native", "tenant": "acme", "family": "native", "route": {},
        "content_type": "application/json", "received_at": 1732320000000000,
        "items": [{"op": "upsert", "event_id": event_id, "raw": raw, "attempt": 1,
                   "replay_of": None, "receipt_id": None}],
    }  # fmt: skip
    partition = partition_for(Identity("acme", "native", event_id).key(), settings.partitions)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(f"{settings.topic_prefix}ingest.raw", encode("IngestEnvelope", envelope),
                     partition=partition)  # fmt: skip
    assert producer.flush(10) == 0

    def stored() -> tuple[Any, ...] | None:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT raw, stage, reasons, source_partition FROM dead_letters"
                " WHERE event_id = %s",
                (event_id,),
            ).fetchone()

    raw_back, stage, reasons, source_partition = eventually(stored)
    assert bytes(raw_back) == raw and stage == "stream" and source_partition == partition
    assert reasons[0]["code"] == "invalid_timestamp"


def test_the_same_id_twice_leaves_the_newer_version(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("acme")
    event_id = f"dup-{uuid.uuid4()}"
    assert _post(stack, key, _event(event_id, v=1)).status == 202
    assert _post(stack, key, [_event(event_id, v=2), _event(event_id, v=3)]).status == 202

    def latest() -> bool:
        answer = _get(stack, key, f"/v1/events/{event_id}")
        return answer.status == 200 and answer.json()["data"] == {"v": 3}

    assert eventually(latest)
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute(  # type: ignore[misc]
            "SELECT count(*) FROM events WHERE event_id = %s", (event_id,)
        ).fetchone()
    assert count == 1


def _tombstone_on_events_topic(stack: ProcessStack, event_id: str, tenant: str) -> bool:
    settings = stack.settings
    consumer = Consumer({
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": f"probe-{uuid.uuid4()}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([f"{settings.topic_prefix}events"])
    wanted = Identity(tenant, "native", event_id).key()
    try:
        idle = 0
        while idle < 5:
            messages = consumer.consume(500, timeout=1.0)
            idle = 0 if messages else idle + 1
            for msg in messages:
                if msg.error() is None and msg.key() == wanted and msg.value() is None:
                    return True
        return False
    finally:
        consumer.close()


def test_delete_removes_the_row_and_leaves_a_tombstone(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("acme")
    event_id = f"del-{uuid.uuid4()}"
    assert _post(stack, key, _event(event_id)).status == 202
    assert eventually(lambda: _get(stack, key, f"/v1/events/{event_id}").status == 200)

    answer = call("DELETE", f"{stack.base_url}/v1/events/{event_id}", headers={"X-API-Key": key})
    assert answer.status == 202 and answer.json()["deletion_id"]
    assert eventually(lambda: _get(stack, key, f"/v1/events/{event_id}").status == 404)
    assert _tombstone_on_events_topic(stack, event_id, "acme")


def test_a_delete_covers_an_event_still_in_flight(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """Post then delete at once: the delete is ordered after the event, so it never shows."""
    key = new_key("acme")
    event_id = f"inflight-{uuid.uuid4()}"
    later_id = f"after-{uuid.uuid4()}"
    assert _post(stack, key, _event(event_id)).status == 202
    deleted = call("DELETE", f"{stack.base_url}/v1/events/{event_id}", headers={"X-API-Key": key})
    assert deleted.status == 202
    assert _post(stack, key, _event(later_id)).status == 202
    assert eventually(lambda: _get(stack, key, f"/v1/events/{later_id}").status == 200)

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT version FROM event_deletions WHERE tenant = 'acme' AND event_id = %s",
            (event_id,),
        ).fetchone()
        assert row is not None
    assert _get(stack, key, f"/v1/events/{event_id}").status == 404


def test_tenants_are_sealed(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    key_a, key_b = new_key("tenant-a"), new_key("tenant-b")
    event_id = f"secret-{uuid.uuid4()}"
    assert _post(stack, key_a, _event(event_id)).status == 202
    assert eventually(lambda: _get(stack, key_a, f"/v1/events/{event_id}").status == 200)

    assert _get(stack, key_b, f"/v1/events/{event_id}").status == 404
    listing = _get(stack, key_b, "/v1/events?limit=1000").json()["events"]
    assert event_id not in [e["id"] for e in listing]
    other = call("DELETE", f"{stack.base_url}/v1/events/{event_id}", headers={"X-API-Key": key_b})
    assert other.status == 202  # same answer as for an id that does not exist
    probe = f"probe-{uuid.uuid4()}"
    assert _post(stack, key_a, _event(probe)).status == 202
    assert eventually(lambda: _get(stack, key_a, f"/v1/events/{probe}").status == 200)
    assert _get(stack, key_a, f"/v1/events/{event_id}").status == 200


def test_keys_scopes_and_limits(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    assert _post(stack, "", _event("x")).status == 401
    assert _post(stack, "abcdefgh." + "A" * 48, _event("x")).status == 401
    read_only = new_key("acme", ["events:read"])
    assert _post(stack, read_only, _event("x")).status == 403
    key = new_key("acme")
    too_big = b"[" + b",".join([json.dumps(_event(None, pad="x" * 1000)).encode()] * 7000) + b"]"
    assert len(too_big) > stack.settings.max_body_bytes
    answer = _post(stack, key, body=too_big)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "body_too_large"


def test_health_does_not_need_a_key(stack: ProcessStack) -> None:
    assert call("GET", f"{stack.base_url}/healthz").status == 200
    ready = call("GET", f"{stack.base_url}/readyz")
    assert ready.status == 200 and ready.json()["kafka"] == "ok"


def test_a_nul_character_is_refused_and_does_not_stall_the_sink(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    """PostgreSQL cannot store NUL in text/jsonb: such an event is a dead letter, not a poison
    pill that stops the sink for every later event."""
    key = new_key("acme")
    raw = b'{"type": "t", "source": "s", "time": "2024-01-01T00:00:00Z", "data": {"a": "\\u0000"}}'
    answer = _post(stack, key, body=raw)
    assert answer.status == 400
    (rejected,) = answer.json()["rejected"]
    assert rejected["reasons"][0]["code"] == "unsupported_character"
    after = f"after-nul-{uuid.uuid4()}"
    assert _post(stack, key, _event(after)).status == 202
    assert eventually(lambda: _get(stack, key, f"/v1/events/{after}").status == 200)
    stored = eventually(lambda: _dead_letter(database_url, rejected["dead_letter_id"]))
    assert stored["raw"] == raw
    # Refused for a NUL in its id, the event's dead letter is still stored (id as U+FFFD).
    nul_id = b'{"id": "a\\u0000b", "type": "t", "source": "s", "time": "2024-01-01T00:00:00Z",'
    nul_id += b' "data": {}}'
    (refused,) = _post(stack, key, body=nul_id).json()["rejected"]
    letter = eventually(lambda: _dead_letter(database_url, refused["dead_letter_id"]))
    assert letter["raw"] == nul_id and letter["event_id"] == "a\ufffdb"


def test_numbers_postgresql_cannot_store_are_refused_and_those_it_can_come_back(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    """`1e1000000` overflows PostgreSQL's numeric (the sink's insert would fail on it, batch
    after batch); numbers within the bounds are stored and read back exactly."""
    key = new_key("acme")
    refused = (
        b'{"type": "t", "source": "s", "time": "2024-01-01T00:00:00Z", "data": {"a": 1e999999}}'
    )
    answer = _post(stack, key, body=refused)
    assert answer.status == 400
    (rejected,) = answer.json()["rejected"]
    assert rejected["reasons"][0]["code"] == "unsupported_number"
    kept = f"big-{uuid.uuid4()}"
    long = "7" * 3000
    body = (
        f'{{"id": "{kept}", "type": "t", "source": "s", "time": "2024-01-01T00:00:00Z",'
        f' "data": {{"big": 1e1000, "long": {long}, "small": -2.5e-1000}}}}'
    )
    assert _post(stack, key, body=body.encode()).status == 202
    assert eventually(lambda: _get(stack, key, f"/v1/events/{kept}").status == 200)
    data = _get(stack, key, f"/v1/events/{kept}").json()["data"]
    assert data["big"] == 10**1000 and data["long"] == int("7" * 3000)
