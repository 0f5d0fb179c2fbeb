"""Validation of Sluice's native events (CloudEvents-style JSON objects).

Fields: `id` (optional string), `type`, `source`, `time` (RFC 3339; UTC when
no offset is given), `subject` (optional), `data` (an object). Unknown
fields are accepted and ignored. The fast path is one msgspec decode into a
Struct; only a failing event pays for the slower pass that lists every
violation.

An event with `specversion` is a CloudEvent, and a request whose route holds `ce-*`
headers a binary-mode one: both follow `schemas.cloudevents`, which keeps the
attributes a native event drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from schemas.cloudevents import is_binary, validate_binary, validate_structured
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 1024

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]


class NativeEvent(msgspec.Struct, frozen=True):
    type: _Text
    source: _Text
    time: datetime
    data: msgspec.Raw
    id: _Id | None = None
    subject: _Text | None = None
    specversion: str | None = None


_decoder = msgspec.json.Decoder(NativeEvent)
_REQUIRED = ("type", "source", "time", "data")


def validate_native(raw: bytes, route: Mapping[str, str] | None = None) -> Outcome:
    """Turn one raw native event into a `ValidEvent` or a `Rejected` with all its reasons.

    `route` is empty but for a binary-mode CloudEvent, whose attributes it holds.
    """
    if route and is_binary(route):
        return validate_binary(raw, route)
    try:
        event = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _explain(raw)
    if event.specversion is not None:
        return validate_structured(msgspec.json.decode(raw))
    data = str(event.data, "utf-8")  # a Raw value starts at its first byte: nothing to strip
    if data[:1] != "{":
        return Rejected(
            (Violation("wrong_type", "$.data", "data must be a JSON object"),), event.id
        )
    # Positional: this runs once per event at the door and in the stream.
    return ValidEvent(event.id, event.type, event.source, event.subject, _as_utc(event.time), data)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:  # msgspec's reading of "Z": the common case, nothing to do
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _explain(raw: bytes) -> Outcome:
    """The slow path: list every violation of an event msgspec refused (a CloudEvent,
    whose `data` may be absent, goes to `schemas.cloudevents`)."""
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Rejected((Violation("malformed_json", "$", f"not valid UTF-8 JSON: {exc}"),))
    if not isinstance(obj, dict):
        return Rejected((Violation("wrong_type", "$", "an event must be a JSON object"),))
    if obj.get("specversion") is not None:
        return validate_structured(obj)
    found = [v for name in _REQUIRED for v in _check_required(obj, name)]
    found += [v for name in ("id", "subject") for v in _check_optional_text(obj, name)]
    event_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    if not found:
        found.append(Violation("invalid", "$", "event does not match the native schema"))
    return Rejected(tuple(found), event_id)


def _check_required(obj: dict[str, Any], name: str) -> list[Violation]:
    path = f"$.{name}"
    if name not in obj or obj[name] is None:
        return [Violation("missing_field", path, f"`{name}` is required")]
    value = obj[name]
    if name == "data":
        ok = isinstance(value, dict)
        return [] if ok else [Violation("wrong_type", path, "data must be a JSON object")]
    if not isinstance(value, str):
        return [Violation("wrong_type", path, f"`{name}` must be a string")]
    if name == "time":
        return _check_time(value, path)
    return _check_length(value, path, MAX_TEXT_LENGTH)


def _check_optional_text(obj: dict[str, Any], name: str) -> list[Violation]:
    value = obj.get(name)
    if value is None:
        return []
    path = f"$.{name}"
    if not isinstance(value, str):
        return [Violation("wrong_type", path, f"`{name}` must be a string")]
    limit = MAX_ID_LENGTH if name == "id" else MAX_TEXT_LENGTH
    return _check_length(value, path, limit)


def _check_length(value: str, path: str, limit: int) -> list[Violation]:
    if not value:
        return [Violation("invalid_value", path, "must not be empty")]
    if len(value) > limit:
        return [Violation("invalid_value", path, f"longer than {limit} characters")]
    return []


def _check_time(value: str, path: str) -> list[Violation]:
    try:
        msgspec.json.decode(msgspec.json.encode(value), type=datetime)
    except msgspec.ValidationError:
        return [Violation("invalid_timestamp", path, "time must be an RFC 3339 timestamp")]
    return []
