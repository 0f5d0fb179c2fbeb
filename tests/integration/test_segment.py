"""Segment's and RudderStack's doors on the real pipeline, driven by each vendor's own
Python SDK (`segment-analytics-python`, `rudder-sdk-python`): their batching, gzip and
flush, `messageId` as the identity, the SDK's failure handling on a 400, and the doors'
own refusals and single calls, each refused message stored as a dead letter of the
bytes sent."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote

import msgspec
import psycopg
import pytest
import requests
from rudderstack import analytics as rudderstack_analytics
from rudderstack.analytics import request as rudderstack_request
from segment import analytics as segment_analytics
from segment.analytics import request as segment_request

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Vendor:
    family: str
    sdk: ModuleType
    """The SDK's package (`Client`)."""
    request: ModuleType
    """The SDK's request module, whose `_session` posts every batch."""
    ok: bytes
    """The door's answer body when every message was taken."""

    def client(self, stack: ProcessStack, key: str, errors: list[Exception]) -> Any:
        return self.sdk.Client(
            key, host=f"{stack.base_url}/{self.family}", gzip=True, upload_size=100,
            upload_interval=0.2, max_retries=1, on_error=lambda exc, _b: errors.append(exc),
        )  # fmt: skip


SEGMENT = Vendor("segment", segment_analytics, segment_request, b'{"success": true}')
RUDDERSTACK = Vendor("rudderstack", rudderstack_analytics, rudderstack_request, b"OK")
VENDORS = [pytest.param(SEGMENT, id="segment"), pytest.param(RUDDERSTACK, id="rudderstack")]


def _tenant(vendor: Vendor) -> str:
    return f"{vendor.family[:4]}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sent_bodies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every request body either SDK sends, as it went on the wire."""
    bodies: list[bytes] = []
    session = requests.Session()

    def record(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        body = response.request.body
        bodies.append(body if isinstance(body, bytes) else str(body).encode())

    session.hooks["response"].append(record)
    for module in (segment_request, rudderstack_request):
        monkeypatch.setattr(module, "_session", session)
    yield bodies


def _all_events(stack: ProcessStack, key: str, family: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        url = f"{stack.base_url}/v1/events?family={family}&limit=1000{cursor}"
        page = call("GET", url, headers={"X-API-Key": key}).json()
        found += page["events"]
        if not page.get("next_cursor"):
            return found
        cursor = f"&cursor={quote(page['next_cursor'])}"


def _event(stack: ProcessStack, key: str, family: str, event_id: str) -> dict[str, Any] | None:
    url = f"{stack.base_url}/v1/events/{event_id}?family={family}"
    answer = call("GET", url, headers={"X-API-Key": key})
    return answer.json() if answer.status == 200 else None


def _dead_letters(database_url: str, tenant: str, count: int) -> list[bytes] | None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT raw FROM dead_letters WHERE tenant = %s", (tenant,)).fetchall()
    return [bytes(r[0]) for r in rows] if len(rows) >= count else None


class _Batch(msgspec.Struct):
    batch: list[msgspec.Raw]


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_sdk_sends_a_thousand_events_all_queryable_and_a_resend_replaces(
    vendor: Vendor, stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    key = new_key(_tenant(vendor))
    errors: list[Exception] = []
    client = vendor.client(stack, key, errors)
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    for n, message_id in enumerate(ids):
        props = {"n": n, "plan": "pro", "nested": {"ok": True, "tags": ["a", "b"]}}
        if n % 10 == 9:  # some of the other calls, each with its own fields
            client.identify(
                f"user-{n % 7}", {"n": n, "nested": props["nested"]}, message_id=message_id
            )
        else:
            client.track(f"user-{n % 7}", "Signed Up", props, message_id=message_id)
    client.flush()
    client.join()
    assert errors == []

    found = eventually(
        lambda: (got := _all_events(stack, key, vendor.family)) and len(got) >= 1000 and got
    )
    by_id = {e["id"]: e for e in found}
    assert set(by_id) == set(ids)
    for n, message_id in enumerate(ids):
        event = by_id[message_id]
        assert event["source"] == "analytics-python" and event["subject"] == f"user-{n % 7}"
        data = event["data"]
        assert data["messageId"] == message_id and data["userId"] == f"user-{n % 7}"
        if n % 10 == 9:
            traits = data["traits"] if vendor is SEGMENT else data["context"]["traits"]
            assert event["type"] == "identify" and traits["n"] == n  # Rudder's: in context
        else:
            assert event["type"] == "Signed Up" and data["event"] == "Signed Up"
            assert data["properties"]["n"] == n
            assert data["properties"]["nested"] == {"ok": True, "tags": ["a", "b"]}

    again = vendor.client(stack, key, errors)
    again.track("user-0", "Signed Up", {"n": "changed"}, message_id=ids[0])
    again.flush()
    again.join()
    assert errors == []

    def newer() -> dict[str, Any] | None:
        got = _event(stack, key, vendor.family, ids[0])
        return got if got and got["data"]["properties"]["n"] == "changed" else None

    assert eventually(newer)["subject"] == "user-0"
    assert len(_all_events(stack, key, vendor.family)) == 1000


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_refused_message_is_a_byte_identical_dead_letter_and_an_sdk_error(
    vendor: Vendor, stack: ProcessStack, new_key: Callable[..., str], database_url: str,
    sent_bodies: list[bytes],
) -> None:  # fmt: skip
    tenant = _tenant(vendor)
    key = new_key(tenant)
    errors: list[Exception] = []
    client = vendor.client(stack, key, errors)
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    client.track("u", "ok", {"v": 1}, message_id=good)
    client.track("u", "bad", {"v": "nul\x00here"}, message_id=bad)
    client.flush()
    client.join()

    assert len(errors) == 1 and getattr(errors[0], "status", None) == 400  # on_error, no retry
    assert "1 of 2 were refused" in str(errors[0])
    assert len(sent_bodies) == 1
    batch = msgspec.json.decode(gzip.decompress(sent_bodies[0]), type=_Batch).batch
    sent_bad = next(bytes(r) for r in batch if bad.encode() in bytes(r))
    assert eventually(lambda: _dead_letters(database_url, tenant, 1)) == [sent_bad]
    assert eventually(lambda: _event(stack, key, vendor.family, good))["data"]["properties"] == {
        "v": 1
    }
    assert _event(stack, key, vendor.family, bad) is None


def _post(stack: ProcessStack, path: str, body: bytes, key: str | None = None,
          **headers: str) -> Answer:  # fmt: skip
    sent = {"Content-Type": "application/json", **headers}
    if key:  # what the SDKs send: the key as the user name, an empty password
        sent["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return call("POST", f"{stack.base_url}{path}", body=body, headers=sent)


def test_segments_single_calls_limits_and_refusals(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = _tenant(SEGMENT)
    key = new_key(tenant)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    track = {"writeKey": key, "userId": "u", "event": "Bought", "messageId": ids[0]}
    one = _post(stack, "/segment/v1/track", json.dumps(track).encode())  # the key in the body
    page = {"anonymousId": "a", "name": "Home", "messageId": ids[1]}
    short = _post(stack, "/segment/v1/p", json.dumps(page).encode(), key)
    alias = {"userId": "u", "previousId": "a", "messageId": ids[2]}
    zipped = _post(stack, "/segment/v1/alias", gzip.compress(json.dumps(alias).encode()), key,
                   **{"Content-Encoding": "gzip"})  # fmt: skip
    for answer in (one, short, zipped):
        assert (answer.status, answer.json()) == (200, {"success": True}), answer.body
    bought = eventually(lambda: _event(stack, key, "segment", ids[0]))
    assert bought["type"] == "Bought" and "writeKey" not in bought["data"]
    assert eventually(lambda: _event(stack, key, "segment", ids[1]))["type"] == "page"
    assert eventually(lambda: _event(stack, key, "segment", ids[2]))["subject"] == "u"

    missing = _post(stack, "/segment/v1/batch", b'{"batch": []}')
    assert missing.status == 401 and set(missing.json()) == {"success", "code", "message"}
    wrong = _post(stack, "/segment/v1/batch", b'{"batch": []}', "nope.nope")
    assert (wrong.status, wrong.json()["success"]) == (401, False)
    empty = _post(stack, "/segment/v1/batch", b'{"batch": []}', key)
    assert (empty.status, empty.json()["code"]) == (400, "empty_batch")

    big = {"type": "track", "userId": "u", "event": "big", "properties": {"pad": "x" * 33_000}}
    raw_big = json.dumps(big).encode()
    small = b'{"type": "identify", "userId": "fine"}'
    oversized = _post(stack, "/segment/v1/batch", b'{"batch": [%s, %s]}' % (small, raw_big), key)
    assert oversized.status == 400
    assert [r["index"] for r in oversized.json()["rejected"]] == [1]
    assert oversized.json()["rejected"][0]["reasons"][0]["code"] == "event_too_large"
    truncated = gzip.compress(b'{"batch": [{"type": "identify", "userId": "u"}]}')[:-9]
    broken = _post(stack, "/segment/v1/b", truncated, key, **{"Content-Encoding": "gzip"})
    assert (broken.status, broken.json()["code"]) == (400, "invalid_request")
    not_json = b'{"batch": [{"type": '
    malformed = _post(stack, "/segment/v1/batch", not_json, key)
    assert (malformed.status, malformed.json()["success"]) == (400, False)
    stored = eventually(lambda: _dead_letters(database_url, tenant, 3))
    assert sorted(stored) == sorted([raw_big, truncated, not_json])

    pads = [{"type": "identify", "userId": "u", "traits": {"p": "x" * 30_000}}] * 20
    huge = _post(stack, "/segment/v1/batch", json.dumps({"batch": pads}).encode(), key)
    assert (huge.status, huge.json()["success"]) == (413, False)  # past 500 KB a request


def test_rudderstacks_single_calls_answer_ok_and_refusals_in_text(
    stack: ProcessStack, new_key: Callable[..., str], database_url: str
) -> None:
    tenant = _tenant(RUDDERSTACK)
    key = new_key(tenant)
    message_id = str(uuid.uuid4())
    screen = {"userId": "u", "name": "Settings", "messageId": message_id}
    answer = _post(stack, "/rudderstack/v1/screen", json.dumps(screen).encode(), key)
    assert (answer.status, answer.body) == (200, b"OK")
    assert eventually(lambda: _event(stack, key, "rudderstack", message_id))["type"] == "screen"
    refused = _post(stack, "/rudderstack/v1/group", b'{"userId": "u"}', key)  # no groupId
    assert refused.status == 400 and refused.body.startswith(b"Invalid messages")
    missing = _post(stack, "/rudderstack/v1/batch", b'{"batch": []}')
    assert missing.status == 401 and missing.headers["Content-Type"].startswith("text/plain")
    truncated = gzip.compress(b'{"batch": [{"type": "identify", "userId": "u"}]}')[:-9]
    broken = _post(stack, "/rudderstack/v1/batch", truncated, key, **{"Content-Encoding": "gzip"})
    assert broken.status == 400 and broken.body.startswith(b"Invalid request")
    not_a_batch = b'{"batch": {"type": "identify"}}'
    assert _post(stack, "/rudderstack/v1/batch", not_a_batch, key).status == 400
    stored = eventually(lambda: _dead_letters(database_url, tenant, 3))
    assert sorted(stored) == sorted([b'{"userId": "u"}', truncated, not_a_batch])


def test_the_tenant_is_the_keys_whatever_the_body_says(
    stack: ProcessStack, new_key: Callable[..., str]
) -> None:
    tenant_a = _tenant(SEGMENT)
    a_key, b_key = new_key(tenant_a), new_key(_tenant(SEGMENT))
    message_id = str(uuid.uuid4())
    message = {"type": "track", "event": "e", "userId": "u", "messageId": message_id,
               "tenant": tenant_a, "context": {"tenant": tenant_a}}  # fmt: skip
    body = json.dumps({"writeKey": a_key, "batch": [message]}).encode()
    assert _post(stack, "/segment/v1/batch", body, b_key).status == 200  # Basic wins
    assert eventually(lambda: _event(stack, b_key, "segment", message_id))["data"]["tenant"] == (
        tenant_a
    )
    assert _event(stack, a_key, "segment", message_id) is None
