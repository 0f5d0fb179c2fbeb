"""Validation of Segment-spec messages: Segment's HTTP Tracking API (`/segment`) and
RudderStack's data plane (`/rudderstack`), which speak the same spec.

A message is a JSON object of `type` `track`, `identify`, `page`, `screen`, `group` or
`alias` (a single call's route names it, `route["call"]`, when the message does not).
Segment refuses a message past 32 KB; RudderStack's data plane takes up to 4 MB. The
canonical event is:

* id = `messageId` when present (a string of 1 to 256 characters), else assigned by
  the door; a resend of the same `messageId` is a newer version of the same event;
* `type` = `event` for a `track` (required there), else the call's name (`identify`,
  `page`, `screen`, `group`, `alias`);
* `subject` = `userId`, else `anonymousId` (a string, or a number as its decimal text);
  one of them is required, and `alias` needs `userId` and `previousId`, `group` its
  `groupId`, as the spec says;
* `source` = `context.library.name` when it is a non-empty string (`analytics-python`,
  ...), else the family's name;
* `time` = `timestamp`, else `originalTimestamp`, when an ISO 8601 string, else when the
  door received the request (route parameter `received_at`);
* `data` = the message exactly as sent, less a `writeKey` (a single call may carry the
  key in the message: it is never stored as data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.families.received import client_time, received_time
from schemas.families.storable import nul_violations
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

SEGMENT_MAX_MESSAGE_BYTES = 32 * 1024
RUDDERSTACK_MAX_MESSAGE_BYTES = 4000 * 1024
MAX_ID_LENGTH = 256
CALLS = ("track", "identify", "page", "screen", "group", "alias")
SHORT_CALLS = {call[0]: call for call in CALLS}
"""Segment's one-letter paths: `/v1/t` is `/v1/track`, ..."""
KEY_FIELD = "writeKey"


def validate_segment(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw message sent to the Segment door → a `ValidEvent` or every reason not."""
    return validate_message(raw, route, SEGMENT_MAX_MESSAGE_BYTES, "segment")


def validate_rudderstack(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw message sent to the RudderStack door → a `ValidEvent` or every reason not."""
    return validate_message(raw, route, RUDDERSTACK_MAX_MESSAGE_BYTES, "rudderstack")


def validate_message(raw: bytes, route: Mapping[str, str], limit: int, family: str) -> Outcome:
    """A Segment-spec message of at most `limit` bytes; `family` is the default source."""
    if len(raw) > limit:
        size = f"message is {len(raw)} bytes; at most {limit}"
        return Rejected((Violation("event_too_large", "$", size),))
    try:
        message = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejected((Violation("malformed_json", "$", f"not valid JSON: {exc}"),))
    if not isinstance(message, dict):
        return Rejected((Violation("wrong_type", "$", "a message must be a JSON object"),))
    found: list[Violation] = []
    event_id = _message_id(message.get("messageId"), found)
    call = _call(message.get("type"), route.get("call", ""), found)
    subject = _identity(message, "userId") or _identity(message, "anonymousId")
    if subject is None:
        found.append(_missing("$.userId", "every message needs a userId or an anonymousId"))
    name = _call_requirements(call, message, found)
    found += nul_violations(raw, message)
    time = client_time(message.get("timestamp")) or client_time(message.get("originalTimestamp"))
    time = time or received_time(route)
    if time is None:
        found.append(Violation("invalid_route", "route.received_at", "no receive time"))
    if found:
        return Rejected(tuple(found), event_id)
    assert name is not None and time is not None
    return ValidEvent(
        event_id=event_id,
        type=name,
        source=_source(message.get("context"), family),
        subject=subject,
        time=time,
        data_json=_data_json(raw, message),
    )


def _missing(path: str, text: str) -> Violation:
    return Violation("missing_field", path, text)


def _message_id(value: Any, found: list[Violation]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        text = f"messageId must be a string of 1 to {MAX_ID_LENGTH} characters"
        found.append(Violation("invalid_value", "$.messageId", text))
        return None
    return value


def _call(value: Any, routed: str, found: list[Violation]) -> str | None:
    """The message's call: its `type`, else the single call's route."""
    call = value if value is not None else SHORT_CALLS.get(routed, routed)
    if call in CALLS:
        return str(call)
    if call in (None, ""):
        found.append(_missing("$.type", "a batched message needs its type"))
    else:
        found.append(
            Violation("invalid_value", "$.type", f"type must be one of {', '.join(CALLS)}")
        )
    return None


def _call_requirements(
    call: str | None, message: dict[str, Any], found: list[Violation]
) -> str | None:
    """The canonical type of a message of `call`, after the fields the call requires."""
    if call == "track":
        event = message.get("event")
        if isinstance(event, str) and event:
            return event
        found.append(_missing("$.event", "a track needs its event name, event"))
        return None
    if call == "alias" and _identity(message, "previousId") is None:
        found.append(_missing("$.previousId", "an alias needs the previousId it merges"))
    if call == "alias" and _identity(message, "userId") is None:
        found.append(_missing("$.userId", "an alias needs the userId it merges into"))
    if call == "group" and _identity(message, "groupId") is None:
        found.append(_missing("$.groupId", "a group call needs its groupId"))
    return call


def _identity(message: dict[str, Any], field: str) -> str | None:
    value = message.get(field)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return msgspec.json.encode(value).decode()
    return None


def _source(context: Any, family: str) -> str:
    library = context.get("library") if isinstance(context, dict) else None
    name = library.get("name") if isinstance(library, dict) else None
    return name if isinstance(name, str) and name else family


def _data_json(raw: bytes, message: dict[str, Any]) -> str:
    """The message as sent; re-encoded without the key when it carries one."""
    if KEY_FIELD not in message:
        return raw.decode().strip()
    return msgspec.json.encode({k: v for k, v in message.items() if k != KEY_FIELD}).decode()
