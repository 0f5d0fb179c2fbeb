"""Validation of Dynatrace OpenPipeline generic events (`POST /platform/ingest/v1/events`).

A generic event is any JSON object. The canonical event is:

* id = `event.id` when present (a string, or a number written as its decimal
  text), else assigned by the door;
* `type` = `event.type` when it is a non-empty string, else `generic`;
* `source` = `event.provider` when it is a non-empty string, else `openpipeline`;
* `time` = `timestamp` when it is an RFC 3339 string or a number of epoch
  milliseconds, else when the door received the request (route parameter
  `received_at`, fixed at the door so the stream computes the same value),
  as OpenPipeline falls back to the ingest time;
* `data` = the object exactly as sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.families.received import received_time
from schemas.families.storable import nul_violations
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

MAX_ID_LENGTH = 256
ID_FIELD = "event.id"
DEFAULT_TYPE = "generic"
DEFAULT_SOURCE = "openpipeline"


def validate_dynatrace(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw generic event → a `ValidEvent` or every reason it is not one."""
    try:
        event = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejected((Violation("malformed_json", "$", f"not valid JSON: {exc}"),))
    if not isinstance(event, dict):
        return Rejected((Violation("wrong_type", "$", "an event must be a JSON object"),))
    event_id, problem = _event_id(event.get(ID_FIELD))
    if problem is not None:
        return Rejected((problem,))
    unstorable = nul_violations(raw, event)
    if unstorable:
        return Rejected(tuple(unstorable), event_id)
    time = _event_time(event.get("timestamp")) or received_time(route)
    if time is None:
        return Rejected((Violation("invalid_route", "route.received_at", "no receive time"),))
    return ValidEvent(
        event_id=event_id,
        type=_text(event.get("event.type"), DEFAULT_TYPE),
        source=_text(event.get("event.provider"), DEFAULT_SOURCE),
        subject=None,
        time=time,
        data_json=raw.decode().strip(),
    )


def _event_id(value: Any) -> tuple[str | None, Violation | None]:
    path = f"$['{ID_FIELD}']"
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, Violation("wrong_type", path, "event.id must be a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        return None, Violation("invalid_value", path, "event.id must be a finite number")
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    if not text or len(text) > MAX_ID_LENGTH:
        return None, Violation(
            "invalid_value", path, f"event.id must have 1 to {MAX_ID_LENGTH} characters"
        )
    return text, None


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _event_time(value: Any) -> datetime | None:
    """The event's own time, or None when absent or not understood."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
        except ValueError:
            return None
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None
