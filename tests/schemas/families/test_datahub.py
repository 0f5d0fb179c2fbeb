"""DataHub validation: JSON events (with the seed's trailing commas) and CSV rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.families.datahub import (
    DataHubEvent,
    blank_trailing_commas,
    validate_datahub,
    validate_slowly,
)
from schemas.families.datahub_csv import header_violations, parse_record
from schemas.outcome import MAX_VIOLATIONS, Rejected, ValidEvent

SEED_EVENT = b"""{
  "provider": "Datadog",
  "id": "12345678-1234-1234-1234-123412341234",
  "dimensions": [
    {"key": "service_description", "value": "Devices", "type": "fixed"},
    {"key": "zone", "value": "us-east-1b", "type": "fixed",},
    {"key": "department", "value": "rnd", "type": "project_label",}
  ],
  "time": "2024-02-23T12:00:00.00Z",
  "metrics": [{"value": 352, "type": "cost",}, {"value": 36, "type": "usage",}]
}"""
CSV = {"format": "csv", "provider": "mysuperdataset",
       "header": "usage_date,id,fixed.region,label.team,metric.cost,metric.usage"}  # fmt: skip


def _paths(outcome: object) -> set[tuple[str, str]]:
    assert isinstance(outcome, Rejected)
    return {(v.code, v.path) for v in outcome.violations}


def test_the_seed_event_with_its_trailing_commas() -> None:
    outcome = validate_datahub(SEED_EVENT, {})
    assert isinstance(outcome, ValidEvent), outcome
    assert outcome.event_id == "12345678-1234-1234-1234-123412341234"
    assert outcome.source == "Datadog" and outcome.type == "datahub.event"
    assert outcome.time == datetime(2024, 2, 23, 12, tzinfo=UTC)
    data = json.loads(outcome.data_json)
    assert data["metrics"] == [{"type": "cost", "value": 352}, {"type": "usage", "value": 36}]
    assert data["dimensions"][2] == {"type": "project_label", "key": "department", "value": "rnd"}


def test_blanking_trailing_commas_keeps_offsets_and_strings() -> None:
    raw = b'{"a": ",}", "b": [1, 2 ,] ,}'
    blanked = blank_trailing_commas(raw)
    assert len(blanked) == len(raw)
    assert json.loads(blanked) == {"a": ",}", "b": [1, 2]}


def test_every_violation_names_its_field() -> None:
    event: dict[str, Any] = {
        "provider": "Data/dog", "id": "", "time": "2024-02-23 12:00",
        "dimensions": [{"type": "fixed", "key": "colour", "value": "x"}, {"type": "tag"}],
        "metrics": [{"type": "cost", "value": "352"}],
    }  # fmt: skip
    assert _paths(validate_datahub(json.dumps(event).encode(), {})) == {
        ("invalid_value", "$.provider"), ("invalid_value", "$.id"),
        ("invalid_timestamp", "$.time"), ("invalid_value", "$.dimensions[0].key"),
        ("invalid_value", "$.dimensions[1].type"), ("missing_field", "$.dimensions[1].key"),
        ("wrong_type", "$.dimensions[1].value"), ("wrong_type", "$.metrics[0].value"),
    }  # fmt: skip


def test_provider_and_time_are_required_and_unknown_fields_dropped() -> None:
    assert _paths(validate_datahub(b'{"metrics": []}', {})) == {
        ("missing_field", "$.provider"), ("missing_field", "$.time"),
    }  # fmt: skip
    ok = validate_datahub(b'{"provider": "p", "time": "2024-01-01T00:00:00+02:00", "x": 1}', {})
    assert isinstance(ok, ValidEvent) and ok.event_id is None
    assert ok.time == datetime(2023, 12, 31, 22, tzinfo=UTC)
    assert "x" not in json.loads(ok.data_json)


def test_a_good_csv_row() -> None:
    outcome = validate_datahub(b"2024-03-10T00:00:00Z,e-1,us-east1,alpha,1.5,", CSV)
    assert isinstance(outcome, ValidEvent), outcome
    assert outcome.event_id == "e-1" and outcome.source == "mysuperdataset"
    data = json.loads(outcome.data_json)
    assert data["dimensions"] == [
        {"type": "fixed", "key": "region", "value": "us-east1"},
        {"type": "label", "key": "team", "value": "alpha"},
    ]
    assert data["metrics"] == [{"type": "cost", "value": 1.5}]


def test_a_quoted_row_spanning_lines() -> None:
    outcome = validate_datahub(b'2024-03-10T00:00:00Z,,"us,\neast",,7,8', CSV)
    assert isinstance(outcome, ValidEvent) and outcome.event_id is None
    assert json.loads(outcome.data_json)["dimensions"][0]["value"] == "us,\neast"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (b"yesterday,,r,t,1,2", {("invalid_timestamp", "usage_date")}),
        (b"2024-03-10T00:00:00Z,,r,t,lots,2", {("invalid_number", "metric.cost")}),
        (b"2024-03-10T00:00:00Z,,r,t,,", {("missing_metric", "metric")}),
        (b"2024-03-10T00:00:00Z,r,t,1", {("column_count", "row")}),
        (b"\xff\xfe,,,,1,2", {("malformed_row", "row")}),
    ],
)
def test_bad_csv_rows_name_their_column(row: bytes, expected: set[tuple[str, str]]) -> None:
    assert _paths(validate_datahub(row, CSV)) == expected


def test_a_row_lists_at_most_twenty_reasons_and_counts_the_rest() -> None:
    """Issue 15: 256 bad cells a row, every reason kept, cost ~75 KB a row in an upload."""
    columns = ["usage_date", "fixed.region", *(f"metric.m{i}" for i in range(254))]
    route = {**CSV, "header": ",".join(columns)}
    outcome = validate_datahub(b"x,r," + b",".join([b"x"] * 254), route)
    assert isinstance(outcome, Rejected)
    assert len(outcome.violations) == MAX_VIOLATIONS + 1
    first = outcome.violations[0]
    assert (first.code, first.path) == ("invalid_timestamp", "usage_date")
    last = outcome.violations[-1]
    assert (last.code, last.path, last.message) == (
        "too_many_violations", "row", "235 more violations not listed",
    )  # fmt: skip


def test_a_json_event_lists_at_most_twenty_reasons() -> None:
    event = {"provider": "p", "time": "2024-01-01T00:00:00Z",
             "dimensions": [{"type": "tag"}] * 1000}  # fmt: skip
    outcome = validate_datahub(json.dumps(event).encode(), {})
    assert isinstance(outcome, Rejected) and len(outcome.violations) == MAX_VIOLATIONS + 1
    assert outcome.violations[-1].code == "too_many_violations"
    assert outcome.violations[-1].message == "2980 more violations not listed"


def test_csv_headers() -> None:
    assert header_violations(parse_record(CSV["header"])) == []
    found = {(v.code, v.path) for v in header_violations(["id", "fixed.colour", "metric.cost"])}
    assert found == {
        ("missing_column", "usage_date"), ("unknown_column", "fixed.colour"),
    }  # fmt: skip
    assert {v.code for v in header_violations(["usage_date", "label.a", "cost"])} == {
        "unknown_column", "missing_column",
    }  # fmt: skip


_TEXT = st.sampled_from(["", "x", "Datadog", "Data/dog", "a b-c_d", "é"])
_DIMENSION = st.fixed_dictionaries(
    {"type": st.sampled_from(["fixed", "label", "project_label", "tag"]),
     "key": st.sampled_from(["region", "zone", "colour", "", "env"]),
     "value": st.one_of(_TEXT, st.integers(0, 3))},
    optional={"extra": st.integers()},
)  # fmt: skip
_NUMBER = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False))
_METRIC = st.fixed_dictionaries({"type": _TEXT, "value": st.one_of(_NUMBER, st.booleans(), _TEXT)})
_EVENT = st.fixed_dictionaries(
    {},
    optional={
        "provider": _TEXT, "id": st.one_of(st.none(), _TEXT),
        "time": st.sampled_from(["2024-02-23T12:00:00.00Z", "2024-02-23T12:00:00+05:30",
                                 "2024-02-23 12:00:00z", "2024-02-23", "2024-13-01T00:00:00Z"]),
        "dimensions": st.one_of(st.none(), st.lists(_DIMENSION, max_size=3)),
        "metrics": st.one_of(st.none(), st.lists(_METRIC, max_size=3)),
        "unknown": st.integers(),
    },
)  # fmt: skip


@given(_EVENT)
def test_the_fast_path_agrees_with_the_slow_path(event: dict[str, Any]) -> None:
    raw = json.dumps(event).encode()
    assert validate_datahub(raw, {}) == validate_slowly(raw)


def test_a_plain_valid_event_takes_the_fast_path() -> None:
    raw = SEED_EVENT.replace(b",}", b"}")
    decoded = msgspec.json.decode(raw, type=DataHubEvent)
    assert decoded.provider == "Datadog"
    assert validate_datahub(raw, {}) == validate_datahub(SEED_EVENT, {}) == validate_slowly(raw)
