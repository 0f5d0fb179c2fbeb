"""Dashdive's front door end to end on real Kafka and PostgreSQL: the seed's rules, its
answers, dead letters byte for byte, and the events queryable through the native API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

LIST_BUCKETS = {
    "action": "ListBuckets", "timestamp": "2013-01-01T04:00:00Z", "provider": "aws",
    "customerId": "string", "featureId": "string", "clientType": "string", "clientId": "string",
}  # fmt: skip
GET_OBJECT = {
    "action": "GetObject", "timestamp": "2013-01-01T12:00:00+08:00", "provider": "aws",
    "bucketName": "bucket", "objectKey": "key", "versionId": "version", "bytes": 123,
    "customerId": "string",
}  # fmt: skip


def _post(stack: ProcessStack, key: str | None, path: str, body: bytes) -> Answer:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    return call("POST", f"{stack.base_url}/dashdive{path}", body=body, headers=headers)


def _event(stack: ProcessStack, key: str, event_id: str) -> dict[str, Any] | None:
    url = f"{stack.base_url}/v1/events/{event_id}?family=dashdive"
    answer = call("GET", url, headers={"X-API-Key": key})
    return answer.json() if answer.status == 200 else None


def _dead_letter(database_url: str, dead_letter_id: str) -> dict[str, Any] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT raw, reasons, family, route FROM dead_letters WHERE dead_letter_id = %s",
            (dead_letter_id,),
        ).fetchone()
    if row is None:
        return None
    return {"raw": bytes(row[0]), "reasons": row[1], "family": row[2], "route": row[3]}


def test_a_single_event_is_stored_without_its_unknown_fields(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dd-single")
    body = json.dumps({**LIST_BUCKETS, "unknown_foo": "bar"}).encode()
    answer = _post(stack, key, "/s3", body)
    assert answer.status == 200, answer.body
    assert answer.json()["message"] == "OK"
    event = eventually(lambda: _event(stack, key, answer.json()["id"]))
    assert event["type"] == "s3.ListBuckets" and event["source"] == "dashdive/s3"
    assert event["time"] == "2013-01-01T04:00:00+00:00"
    assert event["data"] == LIST_BUCKETS  # unknown_foo is gone, everything else kept


def test_the_single_alias_and_offsets_honoured(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dd-alias")
    answer = _post(stack, key, "/s3/single", json.dumps(GET_OBJECT).encode())
    assert answer.status == 200, answer.body
    event = eventually(lambda: _event(stack, key, answer.json()["id"]))
    assert event["time"] == "2013-01-01T04:00:00+00:00"
    assert event["subject"] == "bucket/key" and event["data"]["bytes"] == 123


def test_a_batch_of_s3_and_a_batch_of_ec2_events(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key("dd-batch")
    s3 = _post(stack, key, "/s3/batch", json.dumps([LIST_BUCKETS, GET_OBJECT]).encode())
    usage = {"action": "InstanceUsage", "timestamp": "2024-05-01T10:00:00Z", "provider": "aws",
             "instanceId": "i-1", "instanceType": "m5.large", "region": "eu-west-1",
             "usageSeconds": 3600}  # fmt: skip
    ec2 = _post(stack, key, "/ec2/batch", json.dumps([usage]).encode())
    assert s3.status == ec2.status == 200, (s3.body, ec2.body)
    ids = s3.json()["ids"] + ec2.json()["ids"]
    assert len(set(ids)) == 3

    def listed() -> list[dict[str, Any]] | None:
        url = f"{stack.base_url}/v1/events?family=dashdive&limit=100"
        events = call("GET", url, headers={"X-API-Key": key}).json()["events"]
        return events if {e["id"] for e in events} == set(ids) else None

    types = {e["type"] for e in eventually(listed)}
    assert types == {"s3.ListBuckets", "s3.GetObject", "ec2.InstanceUsage"}


def test_a_schema_failure_is_400_and_recorded_raw(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("dd-bad")
    raw = b'{"action": "GetObject",  "timestamp": "not a time", "provider": "aws",\n "bytes": "x"}'
    answer = _post(stack, key, "/s3", raw)
    assert answer.status == 400
    body = answer.json()
    assert body["error"] == "schema_violation"
    paths = {v["path"] for v in body["violations"]}
    assert paths == {"$.timestamp", "$.bucketName", "$.objectKey", "$.bytes"}
    stored = eventually(lambda: _dead_letter(database_url, body["deadLetterId"]))
    assert stored["raw"] == raw
    assert stored["family"] == "dashdive" and stored["route"] == {"service": "s3"}


def test_a_batch_with_one_bad_event_is_rejected_whole(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("dd-batch-bad")
    raw = b'[\n  {"action": "ListBuckets", "timestamp": "2024-01-01", "provider": "aws"},\n' \
          b'  {"action": "ListBuckets", "provider": "gcp"}\n]'  # fmt: skip
    answer = _post(stack, key, "/s3/batch", raw)
    assert answer.status == 400
    events = answer.json()["events"]
    assert [e["index"] for e in events] == [0, 1]
    assert events[0]["violations"][0]["code"] == "batch_rejected"
    assert {v["path"] for v in events[1]["violations"]} == {"$.timestamp", "$.provider"}
    first = eventually(lambda: _dead_letter(database_url, events[0]["deadLetterId"]))
    second = eventually(lambda: _dead_letter(database_url, events[1]["deadLetterId"]))
    assert first["raw"] == raw[4 : raw.index(b"},") + 1]
    assert second["raw"] == b'{"action": "ListBuckets", "provider": "gcp"}'
    listing = call("GET", f"{stack.base_url}/v1/events?family=dashdive",
                   headers={"X-API-Key": key}).json()  # fmt: skip
    assert listing["events"] == []


def test_a_batch_that_is_not_an_array_is_one_dead_letter(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    key = new_key("dd-malformed")
    raw = b'[{"action": "ListBuckets", oops'
    answer = _post(stack, key, "/s3/batch", raw)
    assert answer.status == 400 and answer.json()["error"] == "malformed_body"
    stored = eventually(lambda: _dead_letter(database_url, answer.json()["deadLetterId"]))
    assert stored["raw"] == raw


def test_error_answers(stack: ProcessStack, new_key: Callable[..., str]) -> None:
    body = json.dumps(LIST_BUCKETS).encode()
    missing = _post(stack, None, "/s3", body)
    assert missing.status == 401 and missing.json()["error"] == "unauthenticated"
    unknown = _post(stack, f"EXMPLKEY.{uuid.uuid4().hex}", "/s3", body)
    assert unknown.status == 401 and unknown.json()["message"]
    reader = new_key("dd-errors", ["events:read"])
    forbidden = _post(stack, reader, "/s3", body)
    assert forbidden.status == 403 and forbidden.json()["error"] == "forbidden"
    key = new_key("dd-errors")
    nowhere = _post(stack, key, "/lambda", body)
    assert nowhere.status == 404 and nowhere.json()["error"] == "not_found"
    wrong_method = call("GET", f"{stack.base_url}/dashdive/s3", headers={"X-API-Key": key})
    assert wrong_method.status == 405 and "error" in wrong_method.json()
    huge = b"[" + b",".join([body] * 40_000) + b"]"
    too_large = _post(stack, key, "/s3/batch", huge)
    assert too_large.status == 413 and too_large.json()["error"] in {
        "body_too_large",
        "request_entity_too_large",
    }
    many = _post(stack, key, "/s3/batch", b"[" + b",".join([b"{}"] * 10_001) + b"]")
    assert many.status == 413 and many.json()["error"] == "too_many_events"
