"""PostHog events: uuid as the id, event as the type, distinct_id as the subject, the key
never stored as data, and each refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas.families.posthog import MAX_EVENT_BYTES, validate_posthog
from schemas.outcome import Rejected, ValidEvent

ROUTE = {"received_at": "2024-11-23T10:00:00+00:00"}
RECEIVED = datetime(2024, 11, 23, 10, tzinfo=UTC)


def _valid(raw: bytes) -> ValidEvent:
    outcome = validate_posthog(raw, ROUTE)
    assert isinstance(outcome, ValidEvent), outcome
    return outcome


def _codes(raw: bytes) -> list[str]:
    outcome = validate_posthog(raw, ROUTE)
    assert isinstance(outcome, Rejected), outcome
    return [v.code for v in outcome.violations]


def test_an_sdk_event_maps_to_the_canonical_fields() -> None:
    raw = (b'{"event": "signed up", "distinct_id": "u1", "uuid": "0190-abc",'
           b' "timestamp": "2024-01-02T03:04:05.5+02:00",'
           b' "properties": {"$lib": "web", "n": 1}}')  # fmt: skip
    event = _valid(raw)
    assert (event.event_id, event.type, event.subject, event.source) == (
        "0190-abc", "signed up", "u1", "web")  # fmt: skip
    assert event.time == datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC)
    assert event.data_json == raw.decode()


def test_fallbacks_distinct_id_in_properties_numbers_and_receive_time() -> None:
    event = _valid(b'{"event": "e", "properties": {"distinct_id": 42}}')
    assert (event.event_id, event.subject, event.source, event.time) == (
        None, "42", "posthog", RECEIVED)  # fmt: skip
    assert _valid(b'{"event": "e", "distinct_id": "d", "timestamp": "soon"}').time == RECEIVED


def test_the_key_of_the_single_event_form_is_not_kept_as_data() -> None:
    event = _valid(b'{"api_key": "k.secret", "token": "t", "event": "e", "distinct_id": "d"}')
    assert json.loads(event.data_json) == {"event": "e", "distinct_id": "d"}
    js = _valid(b'{"event": "e", "distinct_id": "d", "properties": {"token": "k", "a": 1}}')
    assert json.loads(js.data_json)["properties"] == {"a": 1}


def test_refusals() -> None:
    assert _codes(b'{"distinct_id": "d"}') == ["missing_field"]
    assert _codes(b'{"event": "e"}') == ["missing_field"]
    assert _codes(b'{"event": "e", "distinct_id": "d", "uuid": 7}') == ["invalid_value"]
    assert _codes(b"[1]") == ["wrong_type"]
    assert _codes(b'{"event": ') == ["malformed_json"]
    assert _codes(b'{"event": "e", "distinct_id": "nul\\u0000"}') == ["unsupported_character"]
    big = json.dumps({"event": "e", "distinct_id": "d", "p": "x" * MAX_EVENT_BYTES}).encode()
    assert _codes(big) == ["event_too_large"]
    rejected = validate_posthog(b'{"uuid": "keep-me", "distinct_id": "d"}', ROUTE)
    assert isinstance(rejected, Rejected) and rejected.event_id == "keep-me"
