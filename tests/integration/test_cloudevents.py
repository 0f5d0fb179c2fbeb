"""CloudEvents on `POST /v1/events` in all three HTTP modes, sent as the `cloudevents` SDK
(PyPI) writes them, read back with every attribute and extension; malformed variants
answered 400 and kept as dead letters byte for byte."""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

from sluice.stack import ProcessStack
from tests.conftest import eventually
from tests.httpclient import Answer, call

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def key(new_key: Callable[..., str]) -> str:
    return new_key(f"ce-{uuid.uuid4().hex[:10]}")


def _send(stack: ProcessStack, key: str, headers: Mapping[str, str | bytes], body: bytes) -> Answer:
    """POST with exactly these headers (http.client adds no Content-Type of its own, and
    takes header values as bytes)."""
    url = urlsplit(stack.base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/events")
        for name, value in {**headers, "X-API-Key": key, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        return Answer(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


def _post(stack: ProcessStack, key: str, message: HTTPMessage) -> Answer:
    return _send(stack, key, message.headers, message.body)


def _stored(stack: ProcessStack, key: str, event_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        answer = call("GET", f"{stack.base_url}/v1/events/{event_id}", headers={"X-API-Key": key})
        return answer.json() if answer.status == 200 else None

    return eventually(found)


def _event(data: Any = None, **attributes: Any) -> CloudEvent:
    given = {"type": "com.example.upload", "source": "/uploads", **attributes}
    return CloudEvent(attributes=given, data=data)


def test_structured_mode_keeps_every_attribute_and_extension(stack: ProcessStack, key: str) -> None:
    event = _event({"units": 3, "tags": ["a"]}, subject="report", traceparent=TRACEPARENT,
                   dataschema="https://example.com/upload.json", comexamplecount=7)  # fmt: skip
    message = to_structured_event(event)
    assert message.headers["content-type"] == "application/cloudevents+json"
    answer = _post(stack, key, message)
    assert answer.status == 202, answer.body
    event_id = event.get_id()
    assert answer.json()["ids"] == [event_id]
    stored = _stored(stack, key, event_id)
    assert {k: stored[k] for k in ("type", "source", "subject", "data", "specversion",
                                   "dataschema")} == {
        "type": "com.example.upload", "source": "/uploads", "subject": "report",
        "data": {"units": 3, "tags": ["a"]}, "specversion": "1.0",
        "dataschema": "https://example.com/upload.json",
    }  # fmt: skip
    assert stored["extensions"] == {"traceparent": TRACEPARENT, "comexamplecount": 7}
    sent_time = event.get_time()
    assert sent_time is not None
    assert stored["time"] == sent_time.isoformat()


def test_structured_bytes_travel_as_data_base64(stack: ProcessStack, key: str) -> None:
    event = _event(b"\x00\xffraw", datacontenttype="application/octet-stream")
    message = to_structured_event(event)
    assert b"data_base64" in message.body
    assert _post(stack, key, message).status == 202
    stored = _stored(stack, key, event.get_id())
    assert stored["data"] is None and stored["datacontenttype"] == "application/octet-stream"
    assert base64.b64decode(stored["data_base64"]) == b"\x00\xffraw"


def test_batched_mode_stores_each_event_with_its_extensions(stack: ProcessStack, key: str) -> None:
    events = [_event({"n": i}, source="/batch", traceparent=f"00-{i:032x}-{i:016x}-01")
              for i in range(1000)]  # fmt: skip
    headers = {"Content-Type": "application/cloudevents-batch+json"}
    for start in range(0, len(events), 250):  # four batches of 250
        chunk = events[start : start + 250]
        body = b"[" + b",".join(to_structured_event(e).body for e in chunk) + b"]"
        answer = _send(stack, key, headers, body)
        assert answer.status == 202, answer.body
        assert answer.json()["ids"] == [e.get_id() for e in chunk]

    def listed() -> list[dict[str, Any]] | None:
        page = call("GET", f"{stack.base_url}/v1/events?source=/batch&limit=1000",
                    headers={"X-API-Key": key}).json()["events"]  # fmt: skip
        return page if len(page) == len(events) else None

    by_id = {e["id"]: e for e in eventually(listed)}
    for i, event in enumerate(events):
        stored = by_id[event.get_id()]
        assert stored["data"] == {"n": i} and stored["specversion"] == "1.0"
        assert stored["extensions"] == {"traceparent": f"00-{i:032x}-{i:016x}-01"}


def test_a_resent_id_with_other_extensions_leaves_the_newer_version(
    stack: ProcessStack, key: str
) -> None:
    first = _event({"v": 1}, traceparent=TRACEPARENT)
    assert _post(stack, key, to_binary_event(first)).status == 202
    assert _stored(stack, key, first.get_id())["extensions"] == {"traceparent": TRACEPARENT}
    newer = _event(b"v2", id=first.get_id(), datacontenttype="text/plain", comexamplerev="2")
    answer = _post(stack, key, to_structured_event(newer))
    assert (answer.status, answer.json()["replaced"]) == (202, [first.get_id()])

    def replaced() -> dict[str, Any] | None:
        stored = _stored(stack, key, first.get_id())
        return stored if stored.get("extensions") == {"comexamplerev": "2"} else None

    stored = eventually(replaced)
    assert stored["data"] is None and base64.b64decode(stored["data_base64"]) == b"v2"
    assert stored["datacontenttype"] == "text/plain"


def test_binary_mode_json_data_is_stored_as_json(stack: ProcessStack, key: str) -> None:
    plain = _event({"units": 5}, traceparent=TRACEPARENT, comexamplenote="café, 100%")
    typed = _event({"units": 6}, datacontenttype="application/vnd.example+json")
    sent = [to_binary_event(plain), to_binary_event(typed)]
    assert "content-type" not in sent[0].headers  # the SDK's JSON format, no datacontenttype
    assert "%" in sent[0].headers["ce-comexamplenote"]  # percent-encoded by the SDK
    for message in sent:
        answer = _post(stack, key, message)
        assert answer.status == 202, answer.body
    first, second = _stored(stack, key, plain.get_id()), _stored(stack, key, typed.get_id())
    assert first["data"] == {"units": 5} and "datacontenttype" not in first
    assert first["extensions"] == {"traceparent": TRACEPARENT, "comexamplenote": "café, 100%"}
    assert second["data"] == {"units": 6}
    assert second["datacontenttype"] == "application/vnd.example+json"
    assert "extensions" not in second


def test_binary_mode_other_data_is_kept_base64_with_its_content_type(
    stack: ProcessStack, key: str
) -> None:
    text = _event(b"hello, world\n", datacontenttype="text/plain; charset=utf-8")
    image = _event(b"\x89PNG\r\n\x1a\n\x00\x00[[[[", datacontenttype="image/png")
    for event in (text, image):
        answer = _post(stack, key, to_binary_event(event))
        assert answer.status == 202, answer.body
        stored = _stored(stack, key, event.get_id())
        assert stored["data"] is None
        assert stored["datacontenttype"] == event.get_datacontenttype()
        assert base64.b64decode(stored["data_base64"]) == event.get_data()


def test_binary_mode_without_an_id_gets_one_the_idempotency_key_repeats(
    stack: ProcessStack, key: str
) -> None:
    message = to_binary_event(_event({"units": 1}))
    headers = {k: v for k, v in message.headers.items() if k != "ce-id"}
    assigned = _send(stack, key, headers, message.body).json()["ids"]
    assert len(assigned) == 1 and uuid.UUID(assigned[0]).version == 7
    retry = {**headers, "Idempotency-Key": f"ce-{uuid.uuid4()}"}
    first = _send(stack, key, retry, message.body).json()["ids"]
    assert _send(stack, key, retry, message.body).json()["ids"] == first
    assert _stored(stack, key, first[0])["data"] == {"units": 1}


def _dead_letter_raw(stack: ProcessStack, key: str, dead_letter_id: str) -> bytes:
    def raw() -> bytes | None:
        answer = call("GET", f"{stack.base_url}/v1/dead-letters/{dead_letter_id}",
                      headers={"X-API-Key": key, "Accept": "application/octet-stream"})  # fmt: skip
        return answer.body if answer.status == 200 else None

    return eventually(raw)


def _binary(**changes: str | bytes | None) -> tuple[dict[str, str | bytes], bytes]:
    message = to_binary_event(_event(b"\x01\x02 body", datacontenttype="application/x-raw"))
    headers: dict[str, str | bytes] = dict(message.headers)
    for name, value in changes.items():
        headers.pop(name.replace("_", "-"), None)
        if value is not None:
            headers[name.replace("_", "-")] = value
    return headers, message.body


@pytest.mark.parametrize(
    ("changes", "code", "path"),
    [
        ({"ce_specversion": "0.3"}, "unsupported_specversion", "$headers.ce-specversion"),
        ({"ce_source": None}, "missing_field", "$headers.ce-source"),
        ({"ce_time": "yesterday"}, "invalid_timestamp", "$headers.ce-time"),
        ({"ce_comexampleraw": b"\xff\xfe"}, "invalid_header", "$headers.ce-comexampleraw"),
        ({"ce_subject": "%C3%28"}, "invalid_header", "$headers.ce-subject"),
    ],
    ids=["specversion-0.3", "no-source", "bad-time", "non-utf8-header", "non-utf8-escape"],
)
def test_malformed_binary_events_are_refused_and_dead_lettered_byte_for_byte(
    stack: ProcessStack, key: str, changes: dict[str, Any], code: str, path: str
) -> None:
    headers, body = _binary(**changes)
    answer = _send(stack, key, headers, body)
    assert answer.status == 400, answer.body
    (rejected,) = answer.json()["rejected"]
    assert [(r["code"], r["path"]) for r in rejected["reasons"]] == [(code, path)]
    assert _dead_letter_raw(stack, key, rejected["dead_letter_id"]) == body


def test_a_structured_event_of_another_specversion_is_refused_byte_for_byte(
    stack: ProcessStack, key: str
) -> None:
    good = to_structured_event(_event({"n": 1})).body
    body = good.replace(b'"specversion": "1.0"', b'"specversion": "0.3"')
    assert body != good
    answer = _send(stack, key, {"Content-Type": "application/cloudevents+json"}, body)
    assert answer.status == 400
    (rejected,) = answer.json()["rejected"]
    assert rejected["reasons"][0]["code"] == "unsupported_specversion"
    assert _dead_letter_raw(stack, key, rejected["dead_letter_id"]) == body
    replayed = call("POST", f"{stack.base_url}/v1/dead-letters/{rejected['dead_letter_id']}/replay",
                    body=good, headers={"X-API-Key": key,
                                        "Content-Type": "application/json"})  # fmt: skip
    assert replayed.status == 202, replayed.body
    assert _stored(stack, key, json.loads(good)["id"])["data"] == {"n": 1}


def test_a_binary_event_refused_for_its_body_is_replayed_with_its_headers(
    stack: ProcessStack, key: str
) -> None:
    event = _event({"fixed": True}, datacontenttype="application/json", comexampletag="kept")
    message = to_binary_event(event)
    answer = _send(stack, key, message.headers, b'{"fixed": tru')
    assert answer.status == 400
    (rejected,) = answer.json()["rejected"]
    assert rejected["reasons"][0]["code"] == "malformed_json"
    assert _dead_letter_raw(stack, key, rejected["dead_letter_id"]) == b'{"fixed": tru'
    replay = call("POST", f"{stack.base_url}/v1/dead-letters/{rejected['dead_letter_id']}/replay",
                  body=message.body, headers={"X-API-Key": key,
                                              "Content-Type": "application/json"})  # fmt: skip
    assert replay.status == 202, replay.body
    stored = _stored(stack, key, event.get_id())
    assert stored["data"] == {"fixed": True}
    assert stored["extensions"] == {"comexampletag": "kept"}
