"""Segment-spec messages (Segment and RudderStack): messageId as the id, the event name or
the call as the type, userId/anonymousId as the subject, the write key never stored as
data, each call's required fields, and each family's size bound."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas.families.segment import (
    RUDDERSTACK_MAX_MESSAGE_BYTES,
    SEGMENT_MAX_MESSAGE_BYTES,
    validate_rudderstack,
    validate_segment,
)
from schemas.outcome import Rejected, ValidEvent

ROUTE = {"received_at": "2024-11-23T10:00:00+00:00"}
RECEIVED = datetime(2024, 11, 23, 10, tzinfo=UTC)


def _valid(raw: bytes, route: dict[str, str] = ROUTE) -> ValidEvent:
    outcome = validate_segment(raw, route)
    assert isinstance(outcome, ValidEvent), outcome
    return outcome


def _codes(raw: bytes, route: dict[str, str] = ROUTE) -> list[str]:
    outcome = validate_segment(raw, route)
    assert isinstance(outcome, Rejected), outcome
    return [v.code for v in outcome.violations]


def test_an_sdk_track_maps_to_the_canonical_fields() -> None:
    raw = (b'{"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m-1",'
           b' "timestamp": "2024-01-02T03:04:05.5+02:00", "properties": {"plan": "pro"},'
           b' "context": {"library": {"name": "analytics-python"}}}')  # fmt: skip
    event = _valid(raw)
    assert (event.event_id, event.type, event.subject, event.source) == (
        "m-1", "Signed Up", "u1", "analytics-python")  # fmt: skip
    assert event.time == datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC)
    assert event.data_json == raw.decode()


def test_other_calls_take_their_name_and_fallbacks() -> None:
    event = _valid(b'{"type": "identify", "anonymousId": 42, "traits": {"a": 1}}')
    assert (event.event_id, event.type, event.subject, event.source, event.time) == (
        None, "identify", "42", "segment", RECEIVED)  # fmt: skip
    page = _valid(b'{"name": "Home", "userId": "u", "originalTimestamp": "2024-05-01T00:00:00Z"}',
                  {**ROUTE, "call": "p"})  # fmt: skip
    assert (page.type, page.time) == ("page", datetime(2024, 5, 1, tzinfo=UTC))
    rudder = validate_rudderstack(b'{"type": "screen", "userId": "u"}', ROUTE)
    assert isinstance(rudder, ValidEvent) and rudder.source == "rudderstack"


def test_the_write_key_of_a_single_call_is_not_kept_as_data() -> None:
    event = _valid(
        b'{"writeKey": "k.secret", "event": "e", "userId": "u"}', {**ROUTE, "call": "track"}
    )
    assert json.loads(event.data_json) == {"event": "e", "userId": "u"}


def test_refusals() -> None:
    assert _codes(b'{"type": "track", "userId": "u"}') == ["missing_field"]  # no event
    assert _codes(b'{"type": "track", "event": "e"}') == ["missing_field"]  # no user
    assert _codes(b'{"event": "e", "userId": "u"}') == ["missing_field"]  # batched: no type
    assert _codes(b'{"type": "buy", "userId": "u"}') == ["invalid_value"]
    assert _codes(b'{"type": "alias", "userId": "u"}') == ["missing_field"]
    assert _codes(b'{"type": "group", "userId": "u"}') == ["missing_field"]
    assert _codes(b'{"type": "identify", "userId": "u", "messageId": 7}') == ["invalid_value"]
    assert _codes(b"[1]") == ["wrong_type"]
    assert _codes(b'{"type": ') == ["malformed_json"]
    assert _codes(b'{"type": "identify", "userId": "nul\\u0000"}') == ["unsupported_character"]


def test_segment_refuses_past_32_kb_rudderstack_takes_it() -> None:
    pad = "x" * SEGMENT_MAX_MESSAGE_BYTES
    raw = json.dumps({"type": "identify", "userId": "u", "traits": {"pad": pad}}).encode()
    assert _codes(raw) == ["event_too_large"]
    assert isinstance(validate_rudderstack(raw, ROUTE), ValidEvent)
    huge = json.dumps({"type": "identify", "userId": "u", "p": "x" * RUDDERSTACK_MAX_MESSAGE_BYTES})
    outcome = validate_rudderstack(huge.encode(), ROUTE)
    assert isinstance(outcome, Rejected) and outcome.violations[0].code == "event_too_large"
