"""Validation of dakkio time-series data points (`POST /dakkio/api/data[/batch]`).

A point has `bucketId` and `dataSourceId` (24-hex MongoDB ObjectIds),
`timestamp` (ISO 8601, optional: the door's receive time when absent),
`values` (an object of measurements: numbers, strings or booleans) and
`metadata` (an optional object). In a batch the bucket is the batch's
(route parameter `bucketId`); a point may repeat it but not contradict it.

The canonical event: `source` = bucket id, `subject` = data source id (both
lower-cased), `type` = `dakkio.data_point`, `time` = the timestamp (or the
receive time from route parameter `received_at`, fixed at the door so the
stream computes the same value), `data` = the point as sent, with the
batch's `bucketId` filled in. Violation messages follow dakkio's (zod's)
wording, e.g. "Expected string, received undefined".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from schemas.families.received import received_time
from schemas.families.storable import ESCAPED_NUL, nul_violations
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

EVENT_TYPE = "dakkio.data_point"
BATCH_BUCKET = "bucketId"
"""Route parameter naming the bucket of every point of a batch."""

OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}\Z")  # \Z: "$" takes a trailing newline
_ObjectId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{24}\Z")]
_Measurement = int | float | str | bool


class DataPoint(msgspec.Struct, frozen=True):
    """The fast path's shape of a point; anything it refuses is explained by `point_issues`."""

    dataSourceId: _ObjectId
    values: dict[str, _Measurement]
    bucketId: _ObjectId | None = None
    timestamp: str | None = None
    metadata: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(DataPoint)


@dataclass(frozen=True)
class Issue:
    """One problem of a point, with its path as a list like dakkio's `details[].path`."""

    path: tuple[str | int, ...]
    code: str
    message: str

    def violation(self) -> Violation:
        return Violation(self.code, "$" + "".join(f".{p}" for p in self.path), self.message)


def validate_dakkio(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw data point and its route → a `ValidEvent` or every reason it is not one."""
    try:
        point = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _explain(raw, route)
    bucket = route.get(BATCH_BUCKET) or point.bucketId
    stamp = point.timestamp
    moment = received_time(route) if stamp is None else parse_timestamp(stamp)
    consistent = point.bucketId is None or point.bucketId == bucket
    if bucket is None or not OBJECT_ID.match(bucket) or moment is None:
        return _explain(raw, route)
    if not point.values or not consistent:
        return _explain(raw, route)
    if ESCAPED_NUL in raw and nul_violations(raw, msgspec.json.decode(raw)):
        return _explain(raw, route)
    return ValidEvent(
        event_id=None,
        type=EVENT_TYPE,
        source=bucket.lower(),
        subject=point.dataSourceId.lower(),
        time=moment,
        data_json=_data_json(raw, point, bucket),
    )


def _explain(raw: bytes, route: Mapping[str, str]) -> Rejected:
    return Rejected(tuple(issue.violation() for issue in point_issues(raw, route)))


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 timestamp in UTC (UTC when it has no offset), or None when it is not one."""
    try:
        moment = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00:00+23:59 is year 0
        return None


def point_issues(raw: bytes, route: Mapping[str, str]) -> list[Issue]:
    """Every problem of a point (the slow path, run only for refused points)."""
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return [Issue((), "malformed_json", f"Invalid JSON: {exc}")]
    if not isinstance(obj, dict):
        return [Issue((), "wrong_type", f"Expected object, received {_kind(obj)}")]
    batch_bucket = route.get(BATCH_BUCKET)
    found = _object_id(obj, "bucketId", required=batch_bucket is None)
    if batch_bucket is not None and not OBJECT_ID.match(batch_bucket):
        found.append(Issue(("bucketId",), "invalid_value", "Invalid ObjectId"))
    if batch_bucket and isinstance(obj.get("bucketId"), str) and obj["bucketId"] != batch_bucket:
        found.append(Issue(("bucketId",), "invalid_value", "Must match the batch's bucketId"))
    found += _object_id(obj, "dataSourceId", required=True)
    found += _timestamp(obj.get("timestamp", None), "timestamp" in obj, route)
    found += _values(obj.get("values"), "values" in obj)
    if nul_violations(raw, obj):
        found.append(Issue((), "unsupported_character", "The NUL character cannot be stored"))
    if obj.get("metadata") is not None and not isinstance(obj["metadata"], dict):
        kind = _kind(obj["metadata"])
        found.append(Issue(("metadata",), "wrong_type", f"Expected object, received {kind}"))
    return found or [Issue((), "invalid", "Data point does not match the schema")]


def _object_id(obj: dict[str, Any], name: str, *, required: bool) -> list[Issue]:
    if name not in obj or obj[name] is None:
        if not required:
            return []
        received = "undefined" if name not in obj else "null"
        return [Issue((name,), "missing_field", f"Expected string, received {received}")]
    value = obj[name]
    if not isinstance(value, str):
        return [Issue((name,), "wrong_type", f"Expected string, received {_kind(value)}")]
    if not OBJECT_ID.match(value):
        return [Issue((name,), "invalid_value", "Invalid ObjectId")]
    return []


def _timestamp(value: Any, present: bool, route: Mapping[str, str]) -> list[Issue]:
    if not present or value is None:
        if received_time(route) is None:
            return [Issue((), "invalid_route", "No timestamp and no receive time")]
        return []
    if not isinstance(value, str):
        return [Issue(("timestamp",), "wrong_type", f"Expected string, received {_kind(value)}")]
    if parse_timestamp(value) is None:
        return [Issue(("timestamp",), "invalid_timestamp", "Invalid datetime")]
    return []


def _values(value: Any, present: bool) -> list[Issue]:
    if not present or not isinstance(value, dict):
        received = _kind(value) if present else "undefined"
        code = "wrong_type" if present else "missing_field"
        return [Issue(("values",), code, f"Expected object, received {received}")]
    if not value:
        return [Issue(("values",), "invalid_value", "At least one measurement is required")]
    return [
        Issue(("values", key), "wrong_type",
              f"Expected number, string or boolean, received {_kind(item)}")
        for key, item in value.items()
        if item is None or isinstance(item, dict | list)
    ]  # fmt: skip


def _kind(value: Any) -> str:
    """The name zod gives the JSON type of `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _data_json(raw: bytes, point: DataPoint, bucket: str) -> str:
    if point.bucketId is not None:
        return raw.decode().strip()
    obj = msgspec.json.decode(raw)
    return msgspec.json.encode({"bucketId": bucket, **obj}).decode()
