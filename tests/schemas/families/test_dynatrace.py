"""Dynatrace generic events: event.id as the id, event time, fallbacks, refusals."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.families.dynatrace import validate_dynatrace
from schemas.outcome import Rejected, ValidEvent

ROUTE = {"received_at": "2024-11-23T10:00:00+00:00"}
RECEIVED = datetime(2024, 11, 23, 10, tzinfo=UTC)


def _valid(raw: bytes) -> ValidEvent:
    outcome = validate_dynatrace(raw, ROUTE)
    assert isinstance(outcome, ValidEvent), outcome
    return outcome


def test_the_seed_model_events_are_valid_with_numeric_ids() -> None:
    raw = b'{"event.id": 1, "additionalProp1": "bar", "additionalProp3": [{"prop1": "s"}]}'
    event = _valid(raw)
    assert event.event_id == "1"
    assert (event.type, event.source, event.time) == ("generic", "openpipeline", RECEIVED)
    assert event.data_json == raw.decode()


def test_string_ids_type_provider_and_timestamp_are_used() -> None:
    raw = (
        b'{"event.id": "abc", "event.type": "deploy", "event.provider": "ci",'
        b' "timestamp": "2024-01-02T03:04:05+02:00"}'
    )
    event = _valid(raw)
    assert (event.event_id, event.type, event.source) == ("abc", "deploy", "ci")
    assert event.time == datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)


def test_epoch_millisecond_timestamps_and_unparseable_ones() -> None:
    assert _valid(b'{"timestamp": 1700000000000}').time == datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )
    assert _valid(b'{"timestamp": "yesterday"}').time == RECEIVED


def test_an_id_of_the_wrong_type_and_non_objects_are_rejected() -> None:
    for raw, code in ((b'{"event.id": {"a": 1}}', "wrong_type"), (b'{"event.id": true}',
                      "wrong_type"), (b"[1]", "wrong_type"), (b"{", "malformed_json")):  # fmt: skip
        outcome = validate_dynatrace(raw, ROUTE)
        assert isinstance(outcome, Rejected) and outcome.violations[0].code == code


def test_without_a_receive_time_an_event_without_timestamp_is_rejected() -> None:
    assert isinstance(validate_dynatrace(b"{}", {}), Rejected)


def test_a_nul_character_postgresql_cannot_store_is_rejected() -> None:
    outcome = validate_dynatrace(b'{"event.id": "n", "list": ["\\u0000"]}', ROUTE)
    assert isinstance(outcome, Rejected) and outcome.event_id == "n"
    assert [v.path for v in outcome.violations] == ["$.list[0]"]


def test_invalid_utf8_inside_a_string_is_rejected_not_raised() -> None:
    outcome = validate_dynatrace(b'{"event.id": "\xff"}', ROUTE)
    assert isinstance(outcome, Rejected) and outcome.violations[0].code == "malformed_json"
