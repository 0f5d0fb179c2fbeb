"""Validation of PostHog capture events (`/posthog/capture/`, `/batch/`, `/e/`, `/i/v0/e/`).

A PostHog event is a JSON object of at most 1 MB (PostHog's own per-event cap; the
Python SDK drops events past 900 KiB before sending). The canonical event is:

* id = `uuid` when present (a string of 1 to 256 characters), else assigned by the
  door; a resend of the same `uuid` is a newer version of the same event;
* `type` = `event` (required: PostHog refuses an event without its name);
* `subject` = `distinct_id` (or `properties.distinct_id` / `$distinct_id`), a string
  or a number written as its decimal text (required, as PostHog requires it);
* `source` = `properties.$lib` when it is a non-empty string (`posthog-python`,
  `web`, ...), else `posthog`;
* `time` = `timestamp` when it is an ISO 8601 string, else when the door received
  the request (route parameter `received_at`);
* `data` = the object exactly as sent, less a top-level `api_key` or `token` and
  `properties.token` (posthog-js puts the project key there, and the single-event form
  carries it in the event itself: the key is never stored as data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.families.received import client_time, received_time
from schemas.families.storable import nul_violations
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

MAX_EVENT_BYTES = 1024 * 1024
MAX_ID_LENGTH = 256
DEFAULT_SOURCE = "posthog"
KEY_FIELDS = ("api_key", "token")
"""Where the single-event form carries the project key; removed from `data`."""


def validate_posthog(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw PostHog event → a `ValidEvent` or every reason it is not one."""
    if len(raw) > MAX_EVENT_BYTES:
        size = f"event is {len(raw)} bytes; at most {MAX_EVENT_BYTES}"
        return Rejected((Violation("event_too_large", "$", size),))
    try:
        event = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejected((Violation("malformed_json", "$", f"not valid JSON: {exc}"),))
    if not isinstance(event, dict):
        return Rejected((Violation("wrong_type", "$", "an event must be a JSON object"),))
    found: list[Violation] = []
    event_id = _event_id(event.get("uuid"), found)
    name = event.get("event")
    if not isinstance(name, str) or not name:
        found.append(Violation("missing_field", "$.event", "every event needs its name, event"))
    subject = _distinct_id(event, found)
    found += nul_violations(raw, event)
    time = client_time(event.get("timestamp")) or received_time(route)
    if time is None:
        found.append(Violation("invalid_route", "route.received_at", "no receive time"))
    if found:
        return Rejected(tuple(found), event_id)
    assert isinstance(name, str) and time is not None
    return ValidEvent(
        event_id=event_id,
        type=name,
        source=_source(event.get("properties")),
        subject=subject,
        time=time,
        data_json=_data_json(raw, event),
    )


def _event_id(value: Any, found: list[Violation]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        found.append(Violation(
            "invalid_value", "$.uuid", f"uuid must be a string of 1 to {MAX_ID_LENGTH} characters"
        ))  # fmt: skip
        return None
    return value


def _distinct_id(event: dict[str, Any], found: list[Violation]) -> str | None:
    value = event.get("distinct_id")
    properties = event.get("properties")
    if value is None and isinstance(properties, dict):
        value = properties.get("distinct_id", properties.get("$distinct_id"))
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return msgspec.json.encode(value).decode()
    found.append(Violation(
        "missing_field", "$.distinct_id", "every event needs a distinct_id (a string or number)"
    ))  # fmt: skip
    return None


def _source(properties: Any) -> str:
    if isinstance(properties, dict):
        lib = properties.get("$lib")
        if isinstance(lib, str) and lib:
            return lib
    return DEFAULT_SOURCE


def _data_json(raw: bytes, event: dict[str, Any]) -> str:
    """The event as sent; re-encoded without the key when it carries one."""
    properties = event.get("properties")
    in_properties = isinstance(properties, dict) and "token" in properties
    if not in_properties and not any(field in event for field in KEY_FIELDS):
        return raw.decode().strip()
    kept = {name: value for name, value in event.items() if name not in KEY_FIELDS}
    if in_properties:
        assert isinstance(properties, dict)
        kept["properties"] = {k: v for k, v in properties.items() if k != "token"}
    return msgspec.json.encode(kept).decode()
