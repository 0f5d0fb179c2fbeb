"""Baselime validation: leaf types, the 32 KB limit, route names, a deterministic time."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas.families.baselime import MAX_EVENT_BYTES, validate_baselime
from schemas.outcome import Rejected, ValidEvent

ROUTE = {
    "dataset": "prod-logs",
    "namespace": "checkout",
    "received_at": "2024-11-23T10:00:00+00:00",
}


def test_the_seed_events_are_valid_and_keep_their_bytes() -> None:
    raw = b'{"key1":"value1","key2":"value2"}'
    outcome = validate_baselime(raw, ROUTE)
    assert isinstance(outcome, ValidEvent)
    assert (outcome.source, outcome.type, outcome.event_id) == ("prod-logs", "checkout", None)
    assert outcome.time == datetime(2024, 11, 23, 10, tzinfo=UTC)
    assert outcome.data_json == raw.decode()


def test_nested_objects_numbers_and_booleans_are_valid() -> None:
    raw = json.dumps({"a": {"b": {"c": 1.5, "d": True}}, "e": "x", "f": -3}).encode()
    assert isinstance(validate_baselime(raw, ROUTE), ValidEvent)


def test_every_unsupported_value_is_listed() -> None:
    raw = json.dumps({"a": None, "b": {"c": [1, 2]}, "ok": 1}).encode()
    outcome = validate_baselime(raw, ROUTE)
    assert isinstance(outcome, Rejected)
    assert {(v.code, v.path) for v in outcome.violations} == {
        ("unsupported_type", "$.a"), ("unsupported_type", "$.b.c"),
    }  # fmt: skip


def test_an_event_over_32_kb_is_rejected() -> None:
    raw = json.dumps({"blob": "x" * MAX_EVENT_BYTES}).encode()
    outcome = validate_baselime(raw, ROUTE)
    assert isinstance(outcome, Rejected)
    assert outcome.violations[0].code == "event_too_large"


def test_non_objects_and_bad_routes_are_rejected() -> None:
    for raw in (b"42", b'"text"', b"[1]"):
        outcome = validate_baselime(raw, ROUTE)
        assert isinstance(outcome, Rejected) and outcome.violations[0].code == "wrong_type"
    outcome = validate_baselime(b"{}", {"dataset": "bad name!", "namespace": "n"})
    assert isinstance(outcome, Rejected)
    assert {v.path for v in outcome.violations} == {"route.dataset", "route.received_at"}


def test_a_nul_character_postgresql_cannot_store_is_rejected() -> None:
    outcome = validate_baselime(b'{"a": {"b": "x\\u0000y"}, "ok": "\\\\u0000 is text"}', ROUTE)
    assert isinstance(outcome, Rejected)
    assert [(v.code, v.path) for v in outcome.violations] == [("unsupported_character", "$.a.b")]


def test_invalid_utf8_inside_a_string_is_rejected_not_raised() -> None:
    outcome = validate_baselime(b'{"a": "\xff\xfe"}', ROUTE)
    assert isinstance(outcome, Rejected) and outcome.violations[0].code == "malformed_json"


def test_a_dataset_or_namespace_with_a_trailing_newline_is_refused() -> None:
    event = b'{"message": "m"}'
    received = {"received_at": "2024-01-01T00:00:00+00:00"}
    assert isinstance(validate_baselime(event, {**received, "dataset": "ds", "namespace": "n"}),
                      ValidEvent)  # fmt: skip
    for route in ({"dataset": "ds\n", "namespace": "n"}, {"dataset": "ds", "namespace": "n\n"}):
        outcome = validate_baselime(event, {**received, **route})
        assert isinstance(outcome, Rejected) and outcome.violations[0].code == "invalid_route"
