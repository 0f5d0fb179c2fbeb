"""OTLP log records as the door writes them: a name-based id, the type, source, subject
and time taken from the record and its resource, and each refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from schemas.families.otlp import validate_otlp
from schemas.outcome import Rejected, ValidEvent

ROUTE = {"received_at": "2024-11-23T10:00:00+00:00"}
RECEIVED = datetime(2024, 11, 23, 10, tzinfo=UTC)
SERVICE = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]}


def _raw(record: dict[str, Any], resource: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"resource": resource if resource is not None else SERVICE,
                       "resourceSchemaUrl": "", "scope": {"name": "s"}, "scopeSchemaUrl": "",
                       "logRecord": record}).encode()  # fmt: skip


def _valid(raw: bytes) -> ValidEvent:
    outcome = validate_otlp(raw, ROUTE)
    assert isinstance(outcome, ValidEvent), outcome
    return outcome


def test_a_record_maps_to_the_canonical_fields_with_a_stable_id() -> None:
    trace = "5b8efff798038103d269b633813fc60c"
    record = {"timeUnixNano": "1700000000000000000", "eventName": "order.placed"}
    raw = _raw({**record, "traceId": trace, "body": {"stringValue": "hi"}})
    event = _valid(raw)
    assert (event.type, event.source, event.subject) == (
        "order.placed", "checkout", trace)  # fmt: skip
    assert event.time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert event.data_json == raw.decode()
    assert _valid(raw).event_id == event.event_id  # the same record is the same event
    other = _raw({"timeUnixNano": "1700000000000000001", "body": {"stringValue": "hi"}})
    assert _valid(other).event_id != event.event_id


def test_fallbacks_observed_time_receive_time_default_type_and_service() -> None:
    observed = _valid(_raw({"timeUnixNano": "0", "observedTimeUnixNano": "1700000000000000000"}))
    assert observed.time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    bare = _valid(_raw({}, resource={}))
    assert (bare.type, bare.source, bare.subject, bare.time) == (
        "log", "unknown_service", None, RECEIVED)  # fmt: skip


def test_refusals() -> None:
    def codes(raw: bytes) -> list[str]:
        outcome = validate_otlp(raw, ROUTE)
        assert isinstance(outcome, Rejected) and outcome.event_id, outcome
        return [v.code for v in outcome.violations]

    assert codes(_raw({"timeUnixNano": "soon"})) == ["invalid_value"]
    assert codes(_raw({"body": {"stringValue": "nul \u0000"}})) == ["unsupported_character"]
    assert codes(b'{"logRecord": 3}') == ["wrong_type"]
    assert codes(b"{") == ["malformed_json"]
