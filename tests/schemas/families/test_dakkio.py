"""dakkio points: the seed's example, default timestamps, batch buckets, zod-style issues."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from schemas.families.dakkio import point_issues, validate_dakkio
from schemas.outcome import Rejected, ValidEvent

ROUTE = {"received_at": "2024-11-23T10:00:00+00:00"}
BUCKET, SOURCE = "507f1f77bcf86cd799439011", "507f1f77bcf86cd799439012"
SEED_POINT: dict[str, Any] = {
    "bucketId": BUCKET, "dataSourceId": SOURCE, "timestamp": "2024-01-15T10:30:00Z",
    "values": {"temperature": 22.5, "humidity": 65, "pressure": 1013.25},
    "metadata": {"deviceId": "ESP32-001", "location": "Living Room", "batteryLevel": 85},
}  # fmt: skip


def _raw(**changes: Any) -> bytes:
    point = {**SEED_POINT, **changes}
    return json.dumps({k: v for k, v in point.items() if v is not ...}).encode()


def test_the_seed_point_is_valid() -> None:
    outcome = validate_dakkio(_raw(), ROUTE)
    assert isinstance(outcome, ValidEvent)
    assert (outcome.source, outcome.subject, outcome.type) == (BUCKET, SOURCE, "dakkio.data_point")
    assert outcome.time == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert json.loads(outcome.data_json) == SEED_POINT


def test_a_missing_timestamp_is_the_receive_time() -> None:
    outcome = validate_dakkio(_raw(timestamp=...), ROUTE)
    assert isinstance(outcome, ValidEvent)
    assert outcome.time == datetime(2024, 11, 23, 10, tzinfo=UTC)


def test_a_batch_point_takes_the_batch_bucket() -> None:
    route = {**ROUTE, "bucketId": BUCKET}
    outcome = validate_dakkio(_raw(bucketId=...), route)
    assert isinstance(outcome, ValidEvent)
    assert json.loads(outcome.data_json)["bucketId"] == BUCKET
    other = validate_dakkio(_raw(bucketId="0" * 24), route)
    assert isinstance(other, Rejected)


def test_every_issue_is_listed_with_zod_style_messages() -> None:
    raw = _raw(bucketId=..., dataSourceId="nope", timestamp=1705314600000,
               values={"t": None}, metadata=[1])  # fmt: skip
    outcome = validate_dakkio(raw, ROUTE)
    assert isinstance(outcome, Rejected)
    issues = {(i.path, i.message) for i in point_issues(raw, ROUTE)}
    assert issues == {
        (("bucketId",), "Expected string, received undefined"),
        (("dataSourceId",), "Invalid ObjectId"),
        (("timestamp",), "Expected string, received number"),
        (("values", "t"), "Expected number, string or boolean, received null"),
        (("metadata",), "Expected object, received array"),
    }
    assert {v.path for v in outcome.violations} >= {"$.bucketId", "$.values.t"}


def test_bad_timestamps_and_empty_values_are_rejected() -> None:
    for raw in (_raw(timestamp="15/01/2024"), _raw(values={}), _raw(values=...)):
        assert isinstance(validate_dakkio(raw, ROUTE), Rejected)


def test_a_nul_character_postgresql_cannot_store_is_rejected() -> None:
    raw = _raw(metadata={"deviceId": "ESP\u0000"})
    assert b"\\u0000" in raw
    assert isinstance(validate_dakkio(raw, ROUTE), Rejected)
    assert [i.code for i in point_issues(raw, ROUTE)] == ["unsupported_character"]


def test_invalid_utf8_inside_a_string_is_rejected_not_raised() -> None:
    raw = _raw().replace(b"Living Room", b"Living \xff")
    assert isinstance(validate_dakkio(raw, ROUTE), Rejected)
    assert [i.code for i in point_issues(raw, ROUTE)] == ["malformed_json"]


def test_rfc3339_lowercase_separators_are_accepted() -> None:
    outcome = validate_dakkio(_raw(timestamp="2024-01-15t10:30:00z"), ROUTE)
    assert isinstance(outcome, ValidEvent)
    assert outcome.time == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def test_an_object_id_with_a_trailing_newline_is_refused() -> None:
    assert not isinstance(validate_dakkio(_raw(bucketId=BUCKET + "\n"), ROUTE), ValidEvent)
    assert not isinstance(validate_dakkio(_raw(dataSourceId=SOURCE + "\n"), ROUTE), ValidEvent)


def test_a_timestamp_whose_utc_time_is_before_year_1_is_refused_not_raised() -> None:
    outcome = validate_dakkio(_raw(timestamp="0001-01-01T00:00:00+23:59"), ROUTE)
    assert isinstance(outcome, Rejected)
    assert "processing_error" not in {v.code for v in outcome.violations}
