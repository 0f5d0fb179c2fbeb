"""Dashdive validation: every event type accepted when well-formed, every violation listed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.families.dashdive import _DECODERS, SERVICES, validate_dashdive, validate_slowly
from schemas.families.dashdive_fields import Field
from schemas.outcome import Rejected, ValidEvent

S3 = {"service": "s3"}
EC2 = {"service": "ec2"}
SAMPLES: dict[str, Any] = {
    "text": "x", "timestamp": "2024-01-01T00:00:00Z", "bytes": 12, "part": 3,
    "quantity": 1.5, "boolean": True, "deleted_objects": [{"objectKey": "k"}],
    "s3_provider": "aws", "ec2_provider": "aws", "purchase_option": "spot", "direction": "out",
}  # fmt: skip


def _event(fields: tuple[Field, ...], action: str, **extra: Any) -> bytes:
    event: dict[str, Any] = {f.name: SAMPLES[f.kind] for f in fields if f.required}
    event.update(action=action, **extra)
    return json.dumps(event).encode()


def _codes(outcome: object) -> set[tuple[str, str]]:
    assert isinstance(outcome, Rejected)
    return {(v.code, v.path) for v in outcome.violations}


@pytest.mark.parametrize(
    ("service", "action"),
    [(s, a) for s, (_common, actions) in SERVICES.items() for a in actions],
)
def test_every_event_type_accepts_its_required_fields(service: str, action: str) -> None:
    common, actions = SERVICES[service]
    outcome = validate_dashdive(_event(common + actions[action], action), {"service": service})
    assert isinstance(outcome, ValidEvent), outcome
    assert outcome.type == f"{service}.{action}"
    assert outcome.source == f"dashdive/{service}"


@pytest.mark.parametrize(
    ("service", "action"),
    [(s, a) for s, (_common, actions) in SERVICES.items() for a in actions],
)
def test_the_fast_and_the_slow_path_agree_byte_for_byte(service: str, action: str) -> None:
    common, actions = SERVICES[service]
    fields = common + actions[action]
    optional = {f.name: SAMPLES[f.kind] for f in fields if not f.required}
    nulls = dict.fromkeys(optional)
    for extra in ({}, optional, nulls, {"unknown": 1}):
        raw = _event(fields, action, **extra)
        _DECODERS[service].decode(raw)  # the fast path takes it
        fast = validate_dashdive(raw, {"service": service})
        assert fast == validate_slowly(raw, service), extra
        assert isinstance(fast, ValidEvent) and "null" not in fast.data_json


def test_the_seed_example_and_unknown_fields_dropped() -> None:
    raw = (
        b'{"action": "ListBuckets", "timestamp": "2013-01-01T04:00:00Z", "provider": "aws",'
        b' "customerId": "string", "featureId": "string", "clientType": "string",'
        b' "clientId": "string", "unknown_foo": "bar"}'
    )
    outcome = validate_dashdive(raw, S3)
    assert isinstance(outcome, ValidEvent)
    assert outcome.time == datetime(2013, 1, 1, 4, tzinfo=UTC)
    data = json.loads(outcome.data_json)
    assert "unknown_foo" not in data
    assert data["customerId"] == "string" and data["action"] == "ListBuckets"


def test_no_offset_means_utc_and_offsets_are_honoured() -> None:
    base = {"action": "ListBuckets", "provider": "wasabi"}
    naive = validate_dashdive(json.dumps({**base, "timestamp": "2013-01-01T04:00:00"}).encode(), S3)
    plus8 = validate_dashdive(
        json.dumps({**base, "timestamp": "2013-01-01T12:00:00+08:00"}).encode(), S3
    )
    assert isinstance(naive, ValidEvent) and isinstance(plus8, ValidEvent)
    assert naive.time == plus8.time == datetime(2013, 1, 1, 4, tzinfo=UTC)


def test_explicit_null_is_allowed_for_optional_fields_only() -> None:
    ok = _event(SERVICES["s3"][0], "GetObject", bucketName="b", objectKey="k", bytes=1,
                versionId=None, customerId=None)  # fmt: skip
    assert isinstance(validate_dashdive(ok, S3), ValidEvent)
    bad = _event(SERVICES["s3"][0], "GetObject", bucketName="b", objectKey=None, bytes=1)
    assert ("missing_field", "$.objectKey") in _codes(validate_dashdive(bad, S3))


def test_every_violation_is_listed() -> None:
    raw = json.dumps({
        "action": "UploadPart", "timestamp": "yesterday", "provider": "gcs",
        "bucketName": "b", "uploadId": 7, "partNumber": 0, "bytes": -1, "customerId": 3,
    }).encode()  # fmt: skip
    assert _codes(validate_dashdive(raw, S3)) == {
        ("invalid_timestamp", "$.timestamp"), ("invalid_value", "$.provider"),
        ("missing_field", "$.objectKey"), ("wrong_type", "$.uploadId"),
        ("invalid_value", "$.partNumber"), ("invalid_value", "$.bytes"),
        ("wrong_type", "$.customerId"),
    }  # fmt: skip


def test_bucket_is_another_name_of_bucket_name() -> None:
    raw = _event(SERVICES["s3"][0], "HeadBucket", bucket="photos")
    outcome = validate_dashdive(raw, S3)
    assert isinstance(outcome, ValidEvent)
    assert json.loads(outcome.data_json)["bucketName"] == "photos"
    assert outcome.subject == "photos"
    both = _event(SERVICES["s3"][0], "HeadBucket", bucket="a", bucketName="b")
    outcome = validate_dashdive(both, S3)
    assert isinstance(outcome, ValidEvent) and outcome.subject == "b"


def test_delete_objects_checks_each_object() -> None:
    raw = _event(SERVICES["s3"][0], "DeleteObjects", bucketName="b",
                 deletedObjects=[{"objectKey": "a", "isDeleteMarker": "yes"}, {}])  # fmt: skip
    assert _codes(validate_dashdive(raw, S3)) == {
        ("wrong_type", "$.deletedObjects[0].isDeleteMarker"),
        ("missing_field", "$.deletedObjects[1].objectKey"),
    }


@pytest.mark.parametrize(
    ("raw", "route", "code"),
    [
        (b"{nope", S3, "malformed_json"),
        (b"[1]", S3, "wrong_type"),
        (b'{"action": "Fly", "timestamp": "2024-01-01", "provider": "aws"}', S3, "invalid_value"),
        (b'{"timestamp": "2024-01-01", "provider": "aws"}', S3, "missing_field"),
        (b"{}", {"service": "lambda"}, "unknown_service"),
    ],
)
def test_unusable_events(raw: bytes, route: dict[str, str], code: str) -> None:
    outcome = validate_dashdive(raw, route)
    assert isinstance(outcome, Rejected) and outcome.violations[0].code == code


def test_ec2_usage_is_canonical_and_deterministic() -> None:
    raw = json.dumps({
        "action": "InstanceUsage", "timestamp": "2024-05-01T10:00:00Z", "provider": "aws",
        "instanceId": "i-0abc", "instanceType": "m5.large", "region": "eu-west-1",
        "usageSeconds": 3600, "customerId": "c-1", "extra": [1, 2],
    }).encode()  # fmt: skip
    first, second = validate_dashdive(raw, EC2), validate_dashdive(raw, EC2)
    assert first == second and isinstance(first, ValidEvent)
    assert first.type == "ec2.InstanceUsage" and first.subject == "i-0abc"
    assert json.loads(first.data_json)["usageSeconds"] == 3600
    assert "extra" not in json.loads(first.data_json)
    wrong_provider = raw.replace(b'"provider": "aws"', b'"provider": "wasabi"')
    assert ("invalid_value", "$.provider") in _codes(validate_dashdive(wrong_provider, EC2))


_VALUES = st.one_of(
    st.none(), st.sampled_from(["", "x", "aws", "wasabi", "2024-01-01T00:00:00", "yesterday"]),
    st.integers(-2, 20_000), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.lists(st.fixed_dictionaries({"objectKey": st.sampled_from(["k", ""])},
                                   optional={"isDeleteMarker": st.booleans()}), max_size=2),
)  # fmt: skip


@given(
    st.sampled_from(sorted(SERVICES)),
    st.sampled_from(sorted({a for _c, actions in SERVICES.values() for a in actions})),
    st.dictionaries(
        st.sampled_from(sorted({f.name for c, acts in SERVICES.values()
                                for fields in (c, *acts.values()) for f in fields} | {"bucket"})),
        _VALUES,
    ),
)  # fmt: skip
def test_the_fast_path_agrees_with_the_slow_path(
    service: str, action: str, fields: dict[str, Any]
) -> None:
    raw = json.dumps({**fields, "action": action, "timestamp": "2024-01-01T00:00:00Z",
                      "provider": "aws"}).encode()  # fmt: skip
    assert validate_dashdive(raw, {"service": service}) == validate_slowly(raw, service)
    loose = json.dumps({"action": action, **fields}).encode()
    assert validate_dashdive(loose, {"service": service}) == validate_slowly(loose, service)
