"""PostHog capture on the real pipeline, driven by PostHog's own Python SDK (`posthog` on
PyPI): its batching and flush, `uuid` as the identity, its failure handling on a 400, and
the other encodings its SDKs use (gzip-js, lz64, base64 forms), each raw refusal stored as
one dead letter of the bytes sent."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import msgspec
import psycopg
import pytest
import requests
from lzstring import LZString
from posthog import Posthog
from posthog import request as posthog_request

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


def _tenant() -> str:
    return f"ph-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sent_bodies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every request body the SDK sends, as it went on the wire (to compare dead letters)."""
    bodies: list[bytes] = []
    session = requests.Session()

    def record(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        body = response.request.body
        bodies.append(body if isinstance(body, bytes) else str(body).encode())

    session.hooks["response"].append(record)
    monkeypatch.setattr(posthog_request, "_get_session", lambda: session)
    yield bodies


def _client(stack: ProcessStack, key: str, errors: list[Exception]) -> Posthog:
    return Posthog(
        key, host=f"{stack.base_url}/posthog", gzip=True, flush_at=100, flush_interval=0.5,
        max_retries=1, on_error=lambda exc, _batch: errors.append(exc),
    )  # fmt: skip


def _all_events(stack: ProcessStack, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        url = f"{stack.base_url}/v1/events?family=posthog&limit=1000{cursor}"
        page = call("GET", url, headers={"X-API-Key": key}).json()
        found += page["events"]
        if not page.get("next_cursor"):
            return found
        cursor = f"&cursor={quote(page['next_cursor'])}"


def _event(stack: ProcessStack, key: str, event_id: str) -> dict[str, Any] | None:
    url = f"{stack.base_url}/v1/events/{event_id}?family=posthog"
    answer = call("GET", url, headers={"X-API-Key": key})
    return answer.json() if answer.status == 200 else None


def _dead_letters(database_url: str, tenant: str, count: int) -> list[bytes] | None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT raw FROM dead_letters WHERE tenant = %s", (tenant,)).fetchall()
    return [bytes(r[0]) for r in rows] if len(rows) >= count else None


class _Batch(msgspec.Struct):
    batch: list[msgspec.Raw]


def _post(stack: ProcessStack, path: str, body: bytes, **headers: str) -> Answer:
    sent = {"Content-Type": "application/json", **headers}
    return call("POST", f"{stack.base_url}/posthog{path}", body=body, headers=sent)


def test_the_sdk_sends_a_thousand_events_all_queryable_and_a_resend_replaces(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(_tenant())
    errors: list[Exception] = []
    client = _client(stack, key, errors)
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    for n, event_id in enumerate(ids):
        props = {"n": n, "plan": "pro", "nested": {"ok": True, "tags": ["a", "b"]}}
        client.capture("signed up", distinct_id=f"user-{n % 7}", properties=props, uuid=event_id)
    client.flush()
    client.shutdown()
    assert errors == []

    stored = eventually(lambda: (found := _all_events(stack, key)) and len(found) >= 1000 and found)
    by_id = {e["id"]: e for e in stored}
    assert set(by_id) == set(ids)
    for n, event_id in enumerate(ids):
        event = by_id[event_id]
        assert event["type"] == "signed up" and event["source"] == "posthog-python"
        assert event["subject"] == f"user-{n % 7}"
        assert event["data"]["uuid"] == event_id and event["data"]["event"] == "signed up"
        props = event["data"]["properties"]
        assert props["n"] == n and props["nested"] == {"ok": True, "tags": ["a", "b"]}

    again = _client(stack, key, errors)
    again.capture("signed up", distinct_id="user-0", properties={"n": "changed"}, uuid=ids[0])
    again.shutdown()
    assert errors == []

    def newer() -> dict[str, Any] | None:
        found = _event(stack, key, ids[0])
        return found if found and found["data"]["properties"]["n"] == "changed" else None

    assert eventually(newer)["subject"] == "user-0"
    assert len(_all_events(stack, key)) == 1000


def test_an_event_postgresql_cannot_store_is_a_byte_identical_dead_letter_and_an_sdk_error(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str, sent_bodies: list[bytes]
) -> None:
    tenant = _tenant()
    key = new_key(tenant)
    errors: list[Exception] = []
    client = _client(stack, key, errors)
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    client.capture("ok", distinct_id="u", properties={"v": 1}, uuid=good)
    client.capture("bad", distinct_id="u", properties={"v": "nul\x00here"}, uuid=bad)
    client.shutdown()

    assert len(errors) == 1 and getattr(errors[0], "status", None) == 400  # on_error, no retry
    assert "1 of 2 events were refused" in str(errors[0])
    assert len(sent_bodies) == 1
    batch = msgspec.json.decode(gzip.decompress(sent_bodies[0]), type=_Batch).batch
    sent_bad = next(bytes(r) for r in batch if bad.encode() in bytes(r))
    assert eventually(lambda: _dead_letters(database_url, tenant, 1)) == [sent_bad]
    assert eventually(lambda: _event(stack, key, good))["data"]["properties"]["v"] == 1
    assert _event(stack, key, bad) is None


def test_the_js_encodings_gzip_js_lz64_and_base64_forms(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(_tenant())
    ids = [str(uuid.uuid4()) for _ in range(4)]

    def batch(event_id: str) -> str:
        props = {"$lib": "web", "token": key, "$current_url": "https://x/"}
        event = {"event": "$pageview", "distinct_id": "d", "uuid": event_id, "properties": props}
        return json.dumps([event])  # posthog-js: the key only as properties.token

    gz = _post(stack, "/e/?compression=gzip-js", gzip.compress(batch(ids[0]).encode()),
               **{"Content-Type": "text/plain"})  # fmt: skip
    lz = LZString.compressToBase64(batch(ids[1]))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    lz64 = _post(stack, "/i/v0/e/?compression=lz64", f"data={quote(lz)}".encode(), **form)
    b64 = base64.b64encode(batch(ids[2]).encode()).decode()
    based = _post(stack, "/capture/", f"data={quote(b64)}".encode(), **form)
    single = {"api_key": key, "event": "one", "distinct_id": 5, "uuid": ids[3]}
    one = _post(stack, "/capture/", json.dumps(single).encode())
    for answer in (gz, lz64, based, one):
        assert (answer.status, answer.json()) == (200, {"status": 1}), answer.body

    for event_id in ids[:3]:
        found = eventually(lambda i=event_id: _event(stack, key, i))  # type: ignore[misc]
        assert found["type"] == "$pageview" and found["source"] == "web"
        assert found["data"]["properties"]["$current_url"] == "https://x/"
        assert "token" not in found["data"]["properties"]  # the key is never stored as data
    single_found = eventually(lambda: _event(stack, key, ids[3]))
    assert single_found["subject"] == "5" and "api_key" not in single_found["data"]


def test_refusals_in_posthogs_shapes_and_raw_dead_letters(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = _tenant()
    key = new_key(tenant)
    missing = _post(stack, "/batch/", b'{"batch": [{"event": "e", "distinct_id": "d"}]}')
    assert missing.status == 401 and missing.json()["code"] == "missing_api_key"
    assert set(missing.json()) == {"type", "code", "detail", "attr"}
    wrong = _post(stack, "/batch/", b'{"api_key": "phc_nope", "batch": []}')
    assert (wrong.status, wrong.json()["code"]) == (401, "invalid_api_key")
    empty = _post(stack, "/batch/", json.dumps({"api_key": key, "batch": []}).encode())
    assert (empty.status, empty.json()["code"]) == (400, "no_data")

    truncated = gzip.compress(b'{"batch": [{"event": "e", "distinct_id": "d"}]}')[:-9]
    broken = _post(stack, "/batch/", truncated, **{"Content-Encoding": "gzip",
                                                   "Authorization": f"Bearer {key}"})  # fmt: skip
    assert (broken.status, broken.json()["code"]) == (400, "invalid_payload")
    not_json = b'{"api_key": "%s", "batch": [{"event": ' % key.encode()
    malformed = _post(stack, "/batch/", not_json, **{"Authorization": f"Bearer {key}"})
    assert (malformed.status, malformed.json()["type"]) == (400, "validation_error")
    huge = {"event": "big", "distinct_id": "d", "properties": {"pad": "x" * (1024 * 1024)}}
    raw_huge = json.dumps(huge).encode()
    big = _post(stack, "/batch/", b'{"api_key": "%s", "batch": [%s]}' % (key.encode(), raw_huge))
    assert big.status == 400 and big.json()["rejected"][0]["reasons"][0]["code"] == (
        "event_too_large"
    )
    stored = eventually(lambda: _dead_letters(database_url, tenant, 3))
    assert sorted(stored) == sorted([truncated, not_json, raw_huge])


def test_the_tenant_is_the_keys_whatever_the_body_says(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant_a = _tenant()
    a_key, b_key = new_key(tenant_a), new_key(_tenant())
    event_id = str(uuid.uuid4())
    event = {"event": "e", "distinct_id": "d", "uuid": event_id, "tenant": tenant_a,
             "properties": {"tenant": tenant_a, "token": a_key}}  # fmt: skip
    body = json.dumps({"api_key": b_key, "batch": [event]}).encode()
    assert _post(stack, "/batch/", body).status == 200
    assert eventually(lambda: _event(stack, b_key, event_id))["data"]["tenant"] == tenant_a
    assert _event(stack, a_key, event_id) is None
