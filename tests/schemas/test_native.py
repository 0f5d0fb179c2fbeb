from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.native import validate_native
from schemas.outcome import Rejected, ValidEvent


def test_valid_event_is_normalised_to_utc() -> None:
    out = validate_native(
        b'{"id":"e1","type":"t","source":"s","time":"2024-01-01T02:00:00+02:00",'
        b'"data":{"a":[1,2]},"unknown":true}'
    )
    assert isinstance(out, ValidEvent)
    assert out.event_id == "e1"
    assert out.time == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    assert out.data_json == '{"a":[1,2]}'


def test_time_without_offset_is_utc() -> None:
    out = validate_native(b'{"type":"t","source":"s","time":"2024-01-01T00:00:00","data":{}}')
    assert isinstance(out, ValidEvent)
    assert out.time.tzinfo is not None
    assert out.event_id is None


def test_every_violation_is_reported() -> None:
    out = validate_native(b'{"id":"x","type":5,"time":"yesterday","data":[1]}')
    assert isinstance(out, Rejected)
    found = {(v.code, v.path) for v in out.violations}
    assert found == {
        ("wrong_type", "$.type"),
        ("missing_field", "$.source"),
        ("invalid_timestamp", "$.time"),
        ("wrong_type", "$.data"),
    }
    assert out.event_id == "x"


def test_malformed_json_and_non_objects() -> None:
    bad = validate_native(b'{"type": "t",')
    assert isinstance(bad, Rejected) and bad.violations[0].code == "malformed_json"
    arr = validate_native(b"[1,2]")
    assert isinstance(arr, Rejected) and arr.violations[0].code == "wrong_type"


def test_empty_strings_are_rejected() -> None:
    out = validate_native(b'{"type":"","source":"s","time":"2024-01-01T00:00:00Z","data":{}}')
    assert isinstance(out, Rejected)
    assert out.violations[0].path == "$.type"


def test_invalid_utf8_is_a_rejection_not_a_crash() -> None:
    out = validate_native(b'{"type":"a\xff","source":"s","time":"2024-01-01T00:00:00Z","data":{}}')
    assert isinstance(out, Rejected)
    assert out.violations[0].code == "malformed_json"


def test_nul_characters_postgresql_cannot_store_are_refused_for_every_family() -> None:
    from schemas.validators import validate_safely, validator_for

    base = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{"a":"%s"}}'
    refused = validate_safely(validator_for("native"), base % b"x\\u0000y", {})
    assert isinstance(refused, Rejected)
    assert refused.violations[0].code == "unsupported_character"
    escaped_backslash = validate_safely(validator_for("native"), base % b"x\\\\u0000y", {})
    assert isinstance(escaped_backslash, ValidEvent)
    in_type = b'{"type":"t\\u0000","source":"s","time":"2024-01-01T00:00:00Z","data":{}}'
    assert isinstance(validate_safely(validator_for("native"), in_type, {}), Rejected)


def _full_check(event: ValidEvent) -> Rejected | ValidEvent:
    """What `validate_safely` decides without its quick scans of the bytes."""
    from schemas.validators import _LONG_NUMBER, _NUL, _holds_nul, _long_number_in

    if _holds_nul(event):
        return Rejected((_NUL,), event.event_id)
    if _long_number_in(event.data_json):
        return Rejected((_LONG_NUMBER,), event.event_id)
    return event


@settings(max_examples=300)
@given(
    st.text(min_size=1, max_size=8),
    st.none() | st.text(min_size=1, max_size=8),
    st.dictionaries(st.text(max_size=4), st.text(max_size=6), max_size=3),
    st.booleans(),
)
def test_the_quick_nul_scan_agrees_with_the_field_by_field_check(
    type_: str, subject: str | None, data: dict[str, str], ascii_only: bool
) -> None:
    """The door skips the per-field NUL check when the bytes cannot hold one: same outcome."""
    from schemas.validators import validate_safely

    event: dict[str, Any] = {
        "type": type_,
        "source": "s",
        "time": "2024-01-01T00:00:00Z",
        "data": data,
    }
    if subject is not None:
        event["subject"] = subject
    raw = json.dumps(event, ensure_ascii=ascii_only).encode()
    full = validate_native(raw)
    expected = _full_check(full) if isinstance(full, ValidEvent) else full
    assert validate_safely(validate_native, raw, {}) == expected


@pytest.mark.parametrize(
    ("number", "stored"),
    [
        ("12", True),
        ("-12345", True),
        ("1e1000", True),
        ("2.5e+0003", True),
        ("1e0000000001", True),
        ("7" * 3000, True),
        ("1e1001", False),
        ("1e999999", False),
        ("-1E-5000", False),
        ("7" * 3001, False),
        ("1." + "5" * 3000, False),
    ],
)
def test_numbers_past_what_postgresql_stores_are_refused(number: str, stored: bool) -> None:
    from schemas.validators import validate_safely

    raw = (
        '{"type":"t","source":"s","time":"2024-01-01T00:00:00Z",'
        f'"data":{{"n":{number},"note":"e12345 in text is not a number"}}}}'
    ).encode()
    outcome = validate_safely(validate_native, raw, {})
    if stored:
        assert isinstance(outcome, ValidEvent)
    else:
        assert isinstance(outcome, Rejected)
        assert [v.code for v in outcome.violations] == ["unsupported_number"]


@settings(max_examples=300)
@given(
    st.text("0123456789", min_size=1, max_size=6),
    st.text("0123456789", max_size=4),
    st.sampled_from(["", "e", "E", "e+", "e-", "E-"]),
    st.text("0123456789", min_size=1, max_size=6),
)
def test_the_quick_number_scan_agrees_with_the_full_check(
    whole: str, fraction: str, mark: str, exponent: str
) -> None:
    """Skipping the full check when the bytes cannot hold a long number changes nothing."""
    from schemas.validators import validate_safely

    number = whole.lstrip("0") or "0"
    number += f".{fraction}" if fraction else ""
    number += f"{mark}{exponent}" if mark else ""
    raw = '{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{"n":' + number + "}}"
    full = validate_native(raw.encode())
    expected = _full_check(full) if isinstance(full, ValidEvent) else full
    assert validate_safely(validate_native, raw.encode(), {}) == expected


def test_the_quick_number_scan_lets_ordinary_ids_and_text_through() -> None:
    """Only an exponent after a digit, or a very long run of digits, calls for the full check:
    ids like `large-12345` once sent every event of a request down the slow path."""
    from schemas.validators import _may_hold_long_number

    for ordinary in (b'{"id":"door-large-12345"}', b'{"s":"device-1234 e-5678 E+9999"}'):
        assert not _may_hold_long_number(ordinary)
    for suspicious in (b'{"n":1e5000}', b'{"n":2.5E-1234}', b'{"n":1e+0001}'):
        assert _may_hold_long_number(suspicious)


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [b'{"n":1}', b'{"n":1e5000}', b'{"s":"a\\u0000"}', b'{"s":"a\\\\u0000"}',
             b'{"id":"large-12345"}', b'{"n":-2.5E-0999}', b'{"n":' + b"9" * 3001 + b"}",
             b'{"n":12}', b"e", b"0000", b'"x\x00"']
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([{}, {"bucket": "b"}, {"bucket": "b\x00"}]),
)  # fmt: skip
def test_the_batch_scan_fires_whenever_a_scan_of_one_event_would(
    raws: list[bytes], route: dict[str, str]
) -> None:
    """`plan_events` skips the per-event scans when the scan of the whole batch is clear,
    so the batch scan must never miss what a per-event scan finds (pieces of two events
    must not combine into a false alarm either: they are joined by a newline)."""
    from schemas.validators import _may_hold_long_number, _may_hold_nul, may_be_unstorable

    one = any(_may_hold_nul(r, route) or _may_hold_long_number(r) for r in raws)
    assert may_be_unstorable(raws, route) == one
