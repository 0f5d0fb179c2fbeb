"""Validation of DoiT DataHub events (`POST /datahub/v1/events`, and CSV rows).

An event: `provider` (letters, digits, `_`, space, `-`), optional `id`, `time`
(RFC 3339), `dimensions` `[{type: fixed|label|project_label, key, value}]` with
`fixed` keys from DataHub's sixteen, `metrics` `[{type, value: number}]`.
Unknown fields are dropped from the canonical event.

Canonical mapping: type `datahub.event`, source the provider, time in UTC,
data `{provider, time, dimensions, metrics}` as sent (the id is the event's
identity). A valid event costs one msgspec decode into `DataHubEvent`; only
one it refuses is decoded to a dict and checked field by field for reasons.
DataHub's own documentation shows bodies with trailing commas, so (on the slow
path) a body that is JSON except for trailing commas is read as if they were absent.

CSV rows (route `format=csv`) are validated by `datahub_csv`, which shares the
dimension, provider and time rules of `datahub_fields`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec

from schemas.families.datahub_csv import validate_csv_row
from schemas.families.datahub_fields import (
    DIMENSION_TYPES,
    EVENT_TYPE,
    FIXED_KEYS,
    PROVIDER,
    RFC3339,
    canonical,
    check_provider,
    check_time,
    parse_time,
)
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation, capped

FAMILY = "datahub"
MAX_TEXT = 1024
MAX_ITEMS = 1000

_QUOTE_OR_COMMA = re.compile(rb'[",]')
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
"""What follows a string's opening quote, through its closing quote. Possessive: on an
unterminated string it fails after one pass, without backtracking."""
_COMMA = re.compile(rb",")
_CLOSES_AFTER_SPACE = re.compile(rb"[ \t\n\r\f\v]*+[}\]]")
"""What makes a comma trailing: ASCII whitespace (as `\\s` in a bytes pattern), then a
closing bracket. Every whitespace run is scanned by at most the one comma before it."""

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


class Dimension(msgspec.Struct, frozen=True):
    """A dimension as stored (field order is the canonical order)."""

    type: Literal["fixed", "label", "project_label"]
    key: _Text
    value: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class Metric(msgspec.Struct, frozen=True):
    """A metric as stored."""

    type: _Text
    value: int | float


class DataHubEvent(msgspec.Struct, frozen=True):
    """The fast path's shape of a valid event; `data` is encoded from its fields but `id`."""

    provider: Annotated[str, msgspec.Meta(pattern=rf"^{PROVIDER.pattern}\Z")]
    time: Annotated[str, msgspec.Meta(pattern=rf"^{RFC3339.pattern}\Z")]
    id: _Text | None = None
    dimensions: Annotated[list[Dimension], msgspec.Meta(max_length=MAX_ITEMS)] | None = None
    metrics: Annotated[list[Metric], msgspec.Meta(max_length=MAX_ITEMS)] | None = None


class _Data(msgspec.Struct, frozen=True):
    """A valid event's canonical `data`, in the same field order as the slow path's."""

    provider: str
    time: str
    dimensions: list[Dimension]
    metrics: list[Metric]


_event_decoder = msgspec.json.Decoder(DataHubEvent)
_encoder = msgspec.json.Encoder()


def validate_datahub(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw DataHub event (or CSV row, when the route says `format=csv`)."""
    if route.get("format") == "csv":
        return validate_csv_row(raw, route)
    try:
        event = _event_decoder.decode(raw)
    except msgspec.DecodeError:
        return validate_slowly(raw)
    dimensions, metrics = event.dimensions or [], event.metrics or []
    if any(d.type == "fixed" and d.key not in FIXED_KEYS for d in dimensions):
        return validate_slowly(raw)
    data = _Data(event.provider, event.time, dimensions, metrics)
    try:
        moment = parse_time(event.time)
    except ValueError:
        return validate_slowly(raw)
    return ValidEvent(
        event.id, EVENT_TYPE, event.provider, None, moment, _encoder.encode(data).decode()
    )


def validate_slowly(raw: bytes) -> Outcome:
    """The slow path: trailing commas tolerated, every violation listed."""
    try:
        obj = decode_lenient(raw)
    except msgspec.DecodeError as exc:
        return Rejected((Violation("malformed_json", "$", f"not valid JSON: {exc}"),))
    if not isinstance(obj, dict):
        return Rejected((Violation("wrong_type", "$", "an event must be a JSON object"),))
    event_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    found = check_provider(obj.get("provider"), "$.provider") + _check_id(obj.get("id"))
    found += check_time(obj.get("time"), "$.time")
    found += _check_list(obj.get("dimensions"), "$.dimensions", check_dimension)
    found += _check_list(obj.get("metrics"), "$.metrics", check_metric)
    if found:
        return Rejected(capped(found), event_id)
    data = {
        "provider": obj["provider"],
        "time": obj["time"],
        "dimensions": [_known(d, ("type", "key", "value")) for d in obj.get("dimensions") or []],
        "metrics": [_known(m, ("type", "value")) for m in obj.get("metrics") or []],
    }
    return canonical(event_id, data)


def decode_lenient(raw: bytes) -> Any:
    """Decode JSON; failing that, the same bytes with trailing commas blanked out."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return msgspec.json.decode(blank_trailing_commas(raw))


def blank_trailing_commas(raw: bytes) -> bytes:
    """`raw` with each comma before a closing `}`/`]` (outside strings) turned into a space.

    The length and every offset stay the same, so elements sliced from the result
    can be sliced from the original bytes at the same positions. One pass, linear in
    `len(raw)` whatever the bytes: each string is scanned once from its opening quote.
    A quote whose string never closes is an ordinary byte, as is every quote after it
    (each of those is escaped inside the unterminated string, so none could close
    either); from there on only commas matter.
    """
    out: bytearray | None = None
    outside = _QUOTE_OR_COMMA
    position = 0
    while (found := outside.search(raw, position)) is not None:
        at = found.start()
        if raw[at] == 0x22:  # an opening quote: skip the string
            string = _STRING_REST.match(raw, at + 1)
            if string is None:
                outside = _COMMA
                position = at + 1
            else:
                position = string.end()
            continue
        if _CLOSES_AFTER_SPACE.match(raw, at + 1):
            out = bytearray(raw) if out is None else out
            out[at] = 0x20
        position = at + 1
    return raw if out is None else bytes(out)


def check_dimension(item: Any, path: str) -> list[Violation]:
    if not isinstance(item, dict):
        return [Violation("wrong_type", path, "a dimension must be an object")]
    kind, key = item.get("type"), item.get("key")
    found = []
    if kind not in DIMENSION_TYPES:
        found.append(
            Violation("invalid_value", f"{path}.type", "must be fixed, label or project_label")
        )
    found += _text(key, f"{path}.key")
    if kind == "fixed" and isinstance(key, str) and key not in FIXED_KEYS:
        found.append(
            Violation("invalid_value", f"{path}.key", f"{key!r} is not a fixed dimension key")
        )
    value = item.get("value")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        found.append(Violation("wrong_type", f"{path}.value", "must be a string"))
    return found


def check_metric(item: Any, path: str) -> list[Violation]:
    if not isinstance(item, dict):
        return [Violation("wrong_type", path, "a metric must be an object")]
    found = _text(item.get("type"), f"{path}.type")
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        found.append(Violation("wrong_type", f"{path}.value", "must be a number"))
    return found


def _check_id(value: Any) -> list[Violation]:
    return [] if value is None else _text(value, "$.id")


def _text(value: Any, path: str) -> list[Violation]:
    if value is None:
        return [Violation("missing_field", path, "is required")]
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        return [Violation("invalid_value", path, f"must be a string of 1 to {MAX_TEXT} characters")]
    return []


def _check_list(
    value: Any, path: str, check_item: Callable[[Any, str], list[Violation]]
) -> list[Violation]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        return [Violation("wrong_type", path, f"must be an array of at most {MAX_ITEMS} items")]
    return [v for i, item in enumerate(value) for v in check_item(item, f"{path}[{i}]")]


def _known(item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: item[name] for name in names if name in item}
