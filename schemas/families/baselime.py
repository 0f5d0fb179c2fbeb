"""Validation of Baselime events (`POST /baselime/v1/{dataset}/{namespace}`).

A Baselime event is a JSON object of at most 32 KB whose leaf values are
strings, booleans or numbers; objects may nest (null and arrays are not among
Baselime's data types). Events carry no id or time of their own, so the
canonical event is:

* `source` = the dataset, `type` = the namespace (both from the route),
* `time` = when the door received the request (route parameter
  `received_at`, fixed at the door so the stream computes the same value),
* `data` = the event object exactly as sent.

The door assigns the id (a UUIDv4). Pure: the dataset's existence is checked
by the door, which has the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec

from schemas.families.received import RECEIVED_AT
from schemas.families.storable import nul_violations
from schemas.outcome import Outcome, Rejected, ValidEvent, Violation

MAX_EVENT_BYTES = 32 * 1024
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
"""Datasets and namespaces: letters, digits, '.', '_' and '-', up to 128 characters (a whole
match: `$` would take a trailing newline)."""

"""Route parameter holding the door's receive time (RFC 3339)."""


def validate_baselime(raw: bytes, route: Mapping[str, str]) -> Outcome:
    """One raw Baselime event and its route → a `ValidEvent` or every reason it is not one."""
    found = list(_route_violations(route.get("dataset", ""), route.get("namespace", ""),
                                   route.get(RECEIVED_AT, "")))  # fmt: skip
    if len(raw) > MAX_EVENT_BYTES:
        found.append(
            Violation(
                "event_too_large", "$", f"event is {len(raw)} bytes; at most {MAX_EVENT_BYTES}"
            )
        )
    try:
        event = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        found.append(Violation("malformed_json", "$", f"not valid JSON: {exc}"))
        return Rejected(tuple(found))
    if not isinstance(event, dict):
        found.append(Violation("wrong_type", "$", "an event must be a JSON object"))
    elif not _plain(event):
        found += _leaf_violations(event, "$")
    if isinstance(event, dict):
        found += nul_violations(raw, event)
    if found:
        return Rejected(tuple(found))
    return ValidEvent(
        event_id=None,
        type=route["namespace"],
        source=route["dataset"],
        subject=None,
        time=received_time(route),
        data_json=raw.decode().strip(),
    )


def received_time(route: Mapping[str, str]) -> datetime:
    """The door's receive time carried in the route (UTC)."""
    return _parse_time(route[RECEIVED_AT])


@lru_cache(maxsize=256)
def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@lru_cache(maxsize=256)
def _route_violations(dataset: str, namespace: str, received: str) -> tuple[Violation, ...]:
    """The route's problems; cached, as every event of a request shares its route."""
    found = [
        Violation("invalid_route", f"route.{name}", f"invalid or missing {name}")
        for name, value in (("dataset", dataset), ("namespace", namespace))
        if not NAME_PATTERN.match(value)
    ]
    try:
        _parse_time(received)
    except ValueError:
        found.append(Violation("invalid_route", f"route.{RECEIVED_AT}", "missing receive time"))
    return tuple(found)


def _plain(value: dict[str, Any]) -> bool:
    """Whether every leaf is a string, boolean or number (the fast check, no paths built)."""
    for item in value.values():
        if isinstance(item, dict):
            if not _plain(item):
                return False
        elif item is None or isinstance(item, list):
            return False
    return True


def _leaf_violations(value: dict[str, Any], path: str) -> list[Violation]:
    """Every value that is not a string, boolean, number or an object of those."""
    found: list[Violation] = []
    for key, item in value.items():
        where = f"{path}.{key}"
        if isinstance(item, dict):
            found += _leaf_violations(item, where)
        elif item is None:
            found.append(Violation("unsupported_type", where, "null is not a Baselime data type"))
        elif isinstance(item, list):
            found.append(
                Violation("unsupported_type", where, "arrays are not a Baselime data type")
            )
    return found
