"""Validation of OTLP log records (`POST /otlp/v1/logs`).

The door splits an `ExportLogsServiceRequest` (protobuf or JSON) into one event per
log record: the record in OTLP/JSON form (camelCase names, hex trace and span ids,
64-bit integers as strings, enums as numbers) with its resource and scope kept beside
it, as `{"resource", "resourceSchemaUrl", "scope", "scopeSchemaUrl", "logRecord"}`.
The canonical event is:

* id = a name-based UUID (v5) of the event's bytes: OTLP records carry no id, and an
  exporter retries a whole request after a lost answer, so the same record sent again
  is the same event (newest wins, with the same content) rather than a duplicate;
  two records identical in every field, timestamps included, are one event;
* `type` = `logRecord.eventName` when set, else `log`;
* `source` = the resource's `service.name`, else `unknown_service` (OTel's default);
* `subject` = `logRecord.traceId` when set;
* `time` = `timeUnixNano`, else `observedTimeUnixNano` when not zero, else when the
  door received the request (route parameter `received_at`);
* `data` = the event object exactly as the door wrote it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.families.received import received_time
from schemas.families.storable import nul_violations
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

MAX_RECORD_BYTES = 1024 * 1024
DEFAULT_TYPE = "log"
DEFAULT_SOURCE = "unknown_service"
ID_NAMESPACE = uuid.UUID("5b4c0f0e-7c1d-4c55-9a43-0a1f0d9e6c11")
"""The namespace of the name-based ids of log records (fixed: ids must not change)."""


def validate_otlp(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One log record as the door wrote it → a `ValidEvent` or every reason it is not one."""
    event_id = _record_id(raw)
    if len(raw) > MAX_RECORD_BYTES:
        size = f"log record is {len(raw)} bytes; at most {MAX_RECORD_BYTES}"
        return Rejected((Violation("event_too_large", "$", size),), event_id)
    try:
        event = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejected((Violation("malformed_json", "$", f"not valid JSON: {exc}"),), event_id)
    record = event.get("logRecord") if isinstance(event, dict) else None
    if not isinstance(record, dict):
        return Rejected((Violation("wrong_type", "$.logRecord", "not a log record"),), event_id)
    found: list[Violation] = []
    time = _nanos(record, "timeUnixNano", found) or _nanos(record, "observedTimeUnixNano", found)
    time = time or received_time(route)
    if time is None:
        found.append(Violation("invalid_route", "route.received_at", "no receive time"))
    found += nul_violations(raw, event)
    if found:
        return Rejected(tuple(found), event_id)
    assert time is not None
    name, trace = record.get("eventName"), record.get("traceId")
    return ValidEvent(
        event_id=event_id,
        type=name if isinstance(name, str) and name else DEFAULT_TYPE,
        source=_service_name(event.get("resource")),
        subject=trace if isinstance(trace, str) and trace else None,
        time=time,
        data_json=raw.decode(),
    )


def _record_id(raw: bytes) -> str:
    """UUIDv5 of `raw` in `ID_NAMESPACE` (as `uuid.uuid5` builds it, from the bytes)."""
    digest = hashlib.sha1(ID_NAMESPACE.bytes + raw, usedforsecurity=False).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def _nanos(record: dict[str, Any], name: str, found: list[Violation]) -> datetime | None:
    """A timestamp of epoch nanoseconds (a decimal string in OTLP/JSON); None when 0."""
    value = record.get(name)
    if value is None:
        return None
    try:
        nanos = int(value) if isinstance(value, str | int) and not isinstance(value, bool) else -1
    except ValueError:
        nanos = -1
    if nanos < 0:
        found.append(Violation("invalid_value", f"$.logRecord.{name}", "not a timestamp"))
        return None
    if nanos == 0:
        return None
    try:
        return datetime.fromtimestamp(nanos / 1e9, tz=UTC)
    except (OverflowError, OSError, ValueError):
        found.append(Violation("invalid_value", f"$.logRecord.{name}", "timestamp out of range"))
        return None


def _service_name(resource: Any) -> str:
    attributes = resource.get("attributes") if isinstance(resource, dict) else None
    for attribute in attributes if isinstance(attributes, list) else ():
        if isinstance(attribute, dict) and attribute.get("key") == "service.name":
            value = attribute.get("value")
            text = value.get("stringValue") if isinstance(value, dict) else None
            if isinstance(text, str) and text:
                return text
    return DEFAULT_SOURCE
