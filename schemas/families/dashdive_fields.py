"""Field kinds of Dashdive events, and the check that lists every violation of one field.

A family's event types are tables of `Field`s (see `dashdive_s3`, `dashdive_ec2`),
so the rules live in data and one small checker applies them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.outcome import Violation

MAX_TEXT = 1024
MAX_DELETED_OBJECTS = 1000
MAX_PART_NUMBER = 10_000


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event type: its JSON name, its kind and whether it must be present."""

    name: str
    kind: str
    required: bool = True


def req(name: str, kind: str = "text") -> Field:
    return Field(name, kind, True)


def opt(name: str, kind: str = "text") -> Field:
    return Field(name, kind, False)


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 timestamp as a UTC datetime; UTC when it has no offset, else None."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check(spec: Field, value: Any, path: str) -> list[Violation]:
    """Every violation of `value` (present, not null) against `spec`'s kind."""
    checker = _CHECKERS.get(spec.kind)
    if checker is not None:
        return checker(value, path)
    choices = ENUMS[spec.kind]
    if value not in choices:
        return [Violation("invalid_value", path, f"must be one of {', '.join(choices)}")]
    return []


def _text(value: Any, path: str) -> list[Violation]:
    if not isinstance(value, str):
        return [Violation("wrong_type", path, "must be a string")]
    if not value or len(value) > MAX_TEXT:
        return [Violation("invalid_value", path, f"must be 1 to {MAX_TEXT} characters")]
    return []


def _timestamp(value: Any, path: str) -> list[Violation]:
    if not isinstance(value, str):
        return [Violation("wrong_type", path, "must be an ISO 8601 timestamp string")]
    if parse_timestamp(value) is None:
        return [Violation("invalid_timestamp", path, "must be an ISO 8601 timestamp")]
    return []


def _integer(value: Any, path: str, low: int, high: int | None) -> list[Violation]:
    if isinstance(value, bool) or not isinstance(value, int):
        return [Violation("wrong_type", path, "must be an integer")]
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        return [Violation("invalid_value", path, f"must be {bound}")]
    return []


def _quantity(value: Any, path: str) -> list[Violation]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [Violation("wrong_type", path, "must be a number")]
    if not math.isfinite(value) or value < 0:
        return [Violation("invalid_value", path, "must be a finite number, at least 0")]
    return []


def _boolean(value: Any, path: str) -> list[Violation]:
    return [] if isinstance(value, bool) else [Violation("wrong_type", path, "must be a boolean")]


_DELETED_OBJECT = (req("objectKey"), opt("versionId"), opt("isDeleteMarker", "boolean"))


def _deleted_objects(value: Any, path: str) -> list[Violation]:
    if not isinstance(value, list):
        return [Violation("wrong_type", path, "must be an array of objects")]
    if not 1 <= len(value) <= MAX_DELETED_OBJECTS:
        return [Violation("invalid_value", path, f"must hold 1 to {MAX_DELETED_OBJECTS} objects")]
    found: list[Violation] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            found.append(Violation("wrong_type", f"{path}[{i}]", "must be an object"))
            continue
        found += check_fields(_DELETED_OBJECT, item, f"{path}[{i}]")
    return found


def check_fields(fields: tuple[Field, ...], obj: dict[str, Any], prefix: str) -> list[Violation]:
    """Every violation of `obj` against `fields`: missing required ones, malformed values."""
    found: list[Violation] = []
    for spec in fields:
        path = f"{prefix}.{spec.name}"
        value = obj.get(spec.name)
        if value is None:
            if spec.required:
                found.append(Violation("missing_field", path, f"`{spec.name}` is required"))
            continue
        found += check(spec, value, path)
    return found


def known_fields(fields: tuple[Field, ...], obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of `obj` that `fields` names, in table order; unknown ones and nulls dropped."""
    out = {f.name: obj[f.name] for f in fields if obj.get(f.name) is not None}
    if "deletedObjects" in out:
        out["deletedObjects"] = [known_fields(_DELETED_OBJECT, o) for o in out["deletedObjects"]]
    return out


_Checker = Callable[[Any, str], list[Violation]]

_CHECKERS: dict[str, _Checker] = {
    "text": _text,
    "timestamp": _timestamp,
    "bytes": lambda v, p: _integer(v, p, 0, None),
    "part": lambda v, p: _integer(v, p, 1, MAX_PART_NUMBER),
    "quantity": _quantity,
    "boolean": _boolean,
    "deleted_objects": _deleted_objects,
}

ENUMS: dict[str, tuple[str, ...]] = {
    "s3_provider": ("aws", "backblaze", "wasabi"),
    "ec2_provider": ("aws",),
    "purchase_option": ("on_demand", "spot", "reserved", "savings_plan"),
    "direction": ("in", "out"),
}
"""Kinds whose values are one of a fixed set."""
