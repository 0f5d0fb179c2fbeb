"""Validation of Dashdive usage events (`POST /dashdive/{service}`).

Each service (`s3`, `ec2`) has event types discriminated by `action`; every
type is a table of fields (`dashdive_s3`, `dashdive_ec2`) on top of the common
ones. Rules from Dashdive: all fields required unless optional; explicit `null`
allowed for optional fields; ISO 8601 timestamps, UTC when no offset is given,
offsets honoured; unknown fields accepted and dropped from the canonical event.

Canonical mapping: type `<service>.<action>` (e.g. `s3.GetObject`), source
`dashdive/<service>`, subject the resource (`bucket/key`, instance or volume
id), time the timestamp in UTC, data the event's known fields as sent. The
body is decoded once by msgspec; the field tables then list every violation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.families.dashdive_ec2 import EC2_ACTIONS
from schemas.families.dashdive_fields import (
    Field,
    check_fields,
    known_fields,
    opt,
    parse_timestamp,
    req,
)
from schemas.families.dashdive_s3 import S3_ACTIONS
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

FAMILY = "dashdive"


def _common(provider_kind: str) -> tuple[Field, ...]:
    return (
        req("action"), req("timestamp", "timestamp"), req("provider", provider_kind),
        opt("customerId"), opt("featureId"), opt("clientType"), opt("clientId"),
    )  # fmt: skip


SERVICES: dict[str, tuple[tuple[Field, ...], dict[str, tuple[Field, ...]]]] = {
    "s3": (_common("s3_provider"), S3_ACTIONS),
    "ec2": (_common("ec2_provider"), EC2_ACTIONS),
}
"""Each service's common fields and its event types (action → fields)."""


def validate_dashdive(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw Dashdive event of the route's `service` → `ValidEvent` or every violation."""
    service = route.get("service", "")
    if service not in SERVICES:
        known = ", ".join(SERVICES)
        return _reject("unknown_service", "$", f"no Dashdive service {service!r}; one of {known}")
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return _reject("malformed_json", "$", f"not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return _reject("wrong_type", "$", "an event must be a JSON object")
    common, actions = SERVICES[service]
    obj, found = _bucket_alias(obj) if service == "s3" else (obj, [])
    action = obj.get("action")
    found += _check_action(action, actions, service)
    fields = common + actions.get(action, ()) if isinstance(action, str) else common
    found += check_fields(fields[1:], obj, "$")
    if found:
        return Rejected(tuple(found))
    data = known_fields(fields, obj)
    moment = parse_timestamp(data["timestamp"])
    if moment is None:  # unreachable: the timestamp was checked with the other fields
        return _reject("invalid_timestamp", "$.timestamp", "must be an ISO 8601 timestamp")
    return ValidEvent(
        event_id=None,
        type=f"{service}.{action}",
        source=f"{FAMILY}/{service}",
        subject=_subject(data),
        time=moment,
        data_json=msgspec.json.encode(data).decode(),
    )


def _reject(code: str, path: str, message: str) -> Rejected:
    return Rejected((Violation(code, path, message),))


def _check_action(action: Any, actions: Mapping[str, object], service: str) -> list[Violation]:
    if action is None:
        return [Violation("missing_field", "$.action", "`action` is required")]
    if not isinstance(action, str):
        return [Violation("wrong_type", "$.action", "must be a string")]
    if action not in actions:
        return [Violation("invalid_value", "$.action", f"not a {service} event type: {action!r}")]
    return []


def _bucket_alias(obj: dict[str, Any]) -> tuple[dict[str, Any], list[Violation]]:
    """`bucket` is accepted as another name of `bucketName` (stored as `bucketName`)."""
    alias = obj.get("bucket")
    if alias is None:
        return obj, []
    current = obj.get("bucketName")
    if current is not None and current != alias:
        message = "`bucket` and `bucketName` name the same field and differ"
        return obj, [Violation("conflicting_fields", "$.bucket", message)]
    return {**obj, "bucketName": alias}, []


def _subject(data: Mapping[str, Any]) -> str | None:
    """The resource the event is about: `bucket/key`, bucket, instance or volume."""
    if "bucketName" in data:
        key = data.get("objectKey")
        return f"{data['bucketName']}/{key}" if key is not None else str(data["bucketName"])
    for name in ("instanceId", "volumeId"):
        if data.get(name) is not None:
            return str(data[name])
    return None
