"""Validation of Dashdive usage events (`POST /dashdive/{service}`).

Each service (`s3`, `ec2`) has event types discriminated by `action`; every
type is a table of fields (`dashdive_s3`, `dashdive_ec2`) on top of the common
ones. Rules from Dashdive: all fields required unless optional; explicit `null`
allowed for optional fields; ISO 8601 timestamps, UTC when no offset is given,
offsets honoured; unknown fields accepted and dropped from the canonical event.

Canonical mapping: type `<service>.<action>` (e.g. `s3.GetObject`), source
`dashdive/<service>`, subject the resource (`bucket/key`, instance or volume
id), time the timestamp in UTC, data the event's known non-null fields as sent.

A valid event costs one msgspec decode into a tagged Struct built from the
field tables (`dashdive_structs`); only an event that fails it is decoded to a
dict and checked field by field (`dashdive_fields`) to list every violation.
`bucket` is accepted for `bucketName` there, when `bucketName` is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
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
from schemas.families.dashdive_structs import build_decoder
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


_DECODERS = {name: build_decoder(name, *tables) for name, tables in SERVICES.items()}


def validate_dashdive(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw Dashdive event of the route's `service` → `ValidEvent` or every violation."""
    service = route.get("service", "")
    if service not in SERVICES:
        known = ", ".join(SERVICES)
        return _reject("unknown_service", "$", f"no Dashdive service {service!r}; one of {known}")
    try:
        event = _DECODERS[service].decode(raw)
    except msgspec.DecodeError:
        return validate_slowly(raw, service)
    data = msgspec.to_builtins(event)
    moment = parse_timestamp(event.timestamp)
    if moment is None:
        return validate_slowly(raw, service)
    return _valid(service, data, moment, msgspec.json.encode(event).decode())


def validate_slowly(raw: bytes, service: str) -> Outcome:
    """The slow path: the same rules over a decoded dict, listing every violation."""
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return _reject("malformed_json", "$", f"not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return _reject("wrong_type", "$", "an event must be a JSON object")
    common, actions = SERVICES[service]
    obj = _bucket_alias(obj) if service == "s3" else obj
    action = obj.get("action")
    found = _check_action(action, actions, service)
    fields = common + actions.get(action, ()) if isinstance(action, str) else common
    found += check_fields(fields[1:], obj, "$")
    if found:
        return Rejected(tuple(found))
    data = known_fields(fields, obj)
    moment = parse_timestamp(data["timestamp"])
    if moment is None:  # unreachable: the timestamp was checked with the other fields
        return _reject("invalid_timestamp", "$.timestamp", "must be an ISO 8601 timestamp")
    return _valid(service, data, moment, msgspec.json.encode(data).decode())


def _valid(service: str, data: dict[str, Any], moment: datetime, data_json: str) -> ValidEvent:
    return ValidEvent(
        event_id=None,
        type=f"{service}.{data['action']}",
        source=f"{FAMILY}/{service}",
        subject=_subject(data),
        time=moment,
        data_json=data_json,
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


def _bucket_alias(obj: dict[str, Any]) -> dict[str, Any]:
    """`bucket` stands for `bucketName` when that is absent (and is dropped otherwise)."""
    if obj.get("bucketName") is None and obj.get("bucket") is not None:
        return {**obj, "bucketName": obj["bucket"]}
    return obj


def _subject(data: Mapping[str, Any]) -> str | None:
    """The resource the event is about: `bucket/key`, bucket, instance or volume."""
    if "bucketName" in data:
        key = data.get("objectKey")
        return f"{data['bucketName']}/{key}" if key is not None else str(data["bucketName"])
    for name in ("instanceId", "volumeId"):
        if data.get(name) is not None:
            return str(data[name])
    return None
