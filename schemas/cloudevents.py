"""CloudEvents 1.0 on the native API: structured, batched and binary HTTP modes.

A native event that carries `specversion` is a CloudEvent. Its attributes Sluice has
columns for (`id`, `type`, `source`, `subject`, `time`) go where a native event's go; the
rest (`specversion`, `datacontenttype`, `dataschema`, every extension attribute, and
`data_base64` for data that is not JSON) are kept as the canonical event's
`attributes_json`, a JSON object with extensions under `extensions`, so an extension
named like one of Sluice's own fields (`version`, `family`) cannot shadow it.

In binary mode the attributes arrive as `ce-*` headers and the body is the data. The door
puts the headers into the request's route (`binary_route`), percent-encoded ASCII as the
HTTP binding writes them, so the envelope carries them to the stream and a dead letter
keeps them beside the body, which stays byte for byte as it arrived; `validate_binary`
reads them back the same way at the door, in the stream and on replay.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec

from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

SPECVERSION = "1.0"
MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 1024
HEADER_PREFIX = "ce-"
CONTENT_TYPE = "content-type"
"""The route key of a binary-mode request's `Content-Type` (its `datacontenttype`)."""

_CONTEXT = ("specversion", "id", "type", "source", "subject", "time",
            "datacontenttype", "dataschema", "data", "data_base64")  # fmt: skip
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}\Z")
_JSON_TYPE = re.compile(r"^\s*(application/json|[^/;\s]+/[^;\s]*\+json)\s*(;|\Z)", re.IGNORECASE)
_NOT_ESCAPED = re.compile(rb"[^\x21-\x7e]|%(?![0-9A-Fa-f]{2})")
_UNSAFE = re.compile(rb"[^\x21-\x7e]|%")


def is_json_type(content_type: str | None) -> bool:
    """Whether data of `content_type` is JSON: `application/json` or any `*/*+json`."""
    return content_type is not None and _JSON_TYPE.match(content_type) is not None


def is_binary(route: Mapping[str, str]) -> bool:
    """Whether a request's route holds a binary-mode CloudEvent's headers."""
    return f"{HEADER_PREFIX}specversion" in route


def binary_route(headers: Mapping[str, str]) -> dict[str, str]:
    """The `ce-*` headers (names lowercased) and `Content-Type` of a binary-mode request,
    as route entries: each value as the bytes received, percent-encoding every byte outside
    printable ASCII (and a `%` that starts no escape), so any header survives the envelope
    and a value that is not UTF-8 is refused by `validate_binary`, wherever it runs."""
    route: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(HEADER_PREFIX) or lower == CONTENT_TYPE:
            raw = value.encode("utf-8", "surrogateescape")  # aiohttp's reading of the bytes
            # Content-Type is no percent-encoded attribute: every `%` of it is escaped.
            unsafe = _UNSAFE if lower == CONTENT_TYPE else _NOT_ESCAPED
            route[lower] = unsafe.sub(lambda m: b"%%%02X" % m.group()[0], raw).decode()
    return route


def validate_binary(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """A binary-mode CloudEvent: attributes from the route's `ce-*` entries, data `raw`."""
    attributes: dict[str, Any] = {}
    found: list[Violation] = []
    for key, value in route.items():
        if not key.startswith(HEADER_PREFIX):
            continue
        try:
            text = unquote_to_bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            found.append(Violation("invalid_header", f"$headers.{key}",
                                   "not UTF-8 once percent-decoded"))  # fmt: skip
            continue
        if "\x00" in text:
            found.append(Violation("unsupported_character", f"$headers.{key}",
                                   "the NUL character cannot be stored"))  # fmt: skip
            continue
        attributes[key[len(HEADER_PREFIX) :]] = text
    content_type = route.get(CONTENT_TYPE)
    if content_type is not None:
        content_type = unquote_to_bytes(content_type).decode("utf-8", "replace")
        attributes["datacontenttype"] = content_type
    data: str | None = None
    if raw and is_json_type(content_type):
        data = _json_text(raw)
        if data is None:
            found.append(Violation("malformed_json", "$",
                                   "a JSON Content-Type, but not UTF-8 JSON"))  # fmt: skip
    elif raw and content_type is None:
        # No Content-Type: JSON when it reads as JSON (what the SDKs' JSON format writes
        # without a datacontenttype), else opaque bytes.
        data = _json_text(raw)
    if raw and data is None and not found:
        attributes["data_base64"] = base64.b64encode(raw).decode()
    return canonical_cloudevent(attributes, data, found, path="$headers.ce-")


def _json_text(raw: bytes) -> str | None:
    try:
        return msgspec.json.encode(msgspec.json.decode(raw)).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def validate_structured(obj: dict[str, Any]) -> Outcome:
    """A structured-mode CloudEvent (one JSON object, or one element of a batch)."""
    data = obj.get("data")
    found: list[Violation] = []
    if "data" in obj and "data_base64" in obj:
        found.append(Violation("conflicting_fields", "$.data_base64",
                               "an event has `data` or `data_base64`, not both"))  # fmt: skip
    text = msgspec.json.encode(data).decode() if data is not None else None
    attributes = {k: v for k, v in obj.items() if k != "data"}
    return canonical_cloudevent(attributes, text, found, path="$.")


def canonical_cloudevent(
    attributes: dict[str, Any], data_json: str | None, found: list[Violation], path: str
) -> Outcome:
    """The canonical event of a CloudEvent's attributes and its data (JSON text, or None
    without data or with `data_base64`), or every reason it is not one."""
    given_id = attributes.get("id")
    event_id = given_id if isinstance(given_id, str) and given_id else None
    spec = attributes.get("specversion")
    if spec != SPECVERSION:
        found.append(Violation("unsupported_specversion", f"{path}specversion",
                               f"specversion must be {SPECVERSION!r}, not {spec!r}"))  # fmt: skip
    for name, limit, required in (("type", MAX_TEXT_LENGTH, True),
                                  ("source", MAX_TEXT_LENGTH, True),
                                  ("id", MAX_ID_LENGTH, False),
                                  ("subject", MAX_TEXT_LENGTH, False),
                                  ("datacontenttype", MAX_TEXT_LENGTH, False),
                                  ("dataschema", MAX_TEXT_LENGTH, False)):  # fmt: skip
        found += _text(attributes.get(name), f"{path}{name}", limit, required=required)
    moment = _time(attributes.get("time"), f"{path}time", found)
    kept: dict[str, Any] = {"specversion": SPECVERSION}
    for name in ("datacontenttype", "dataschema", "data_base64"):
        if attributes.get(name) is not None:
            kept[name] = attributes[name]
    if "data_base64" in kept:
        found += _base64(kept["data_base64"], f"{path}data_base64")
    extensions = {k: v for k, v in attributes.items() if k not in _CONTEXT and v is not None}
    for name, value in extensions.items():
        found += _extension(name, value, f"{path}{name}")
    if found or moment is None:
        return Rejected(tuple(found), event_id)
    if extensions:
        kept["extensions"] = extensions
    return ValidEvent(
        event_id, attributes["type"], attributes["source"], attributes.get("subject"), moment,
        data_json if data_json is not None else "null", msgspec.json.encode(kept).decode(),
    )  # fmt: skip


def _text(value: Any, path: str, limit: int, *, required: bool) -> list[Violation]:
    if value is None:
        return [Violation("missing_field", path, "required")] if required else []
    if not isinstance(value, str):
        return [Violation("wrong_type", path, "must be a string")]
    if not value:
        return [Violation("invalid_value", path, "must not be empty")]
    if len(value) > limit:
        return [Violation("invalid_value", path, f"longer than {limit} characters")]
    return []


def _time(value: Any, path: str, found: list[Violation]) -> datetime | None:
    """Sluice needs `time` (the spec leaves it optional): every event is stored by time."""
    if value is None:
        found.append(Violation("missing_field", path, "Sluice requires `time`"))
        return None
    try:
        moment = msgspec.json.decode(msgspec.json.encode(value), type=datetime)
    except msgspec.ValidationError:
        found.append(Violation("invalid_timestamp", path, "time must be an RFC 3339 timestamp"))
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _base64(value: Any, path: str) -> list[Violation]:
    if not isinstance(value, str):
        return [Violation("wrong_type", path, "data_base64 must be a string")]
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return [Violation("invalid_value", path, "data_base64 is not base64")]
    return []


def _extension(name: str, value: Any, path: str) -> list[Violation]:
    if not _EXTENSION_NAME.match(name):
        message = "an extension's name is 1 to 20 lowercase letters or digits"
        return [Violation("invalid_extension", path, message)]
    if isinstance(value, dict | list):
        return [Violation("invalid_extension", path,
                          "an extension's value is a string, number or boolean")]  # fmt: skip
    return []
