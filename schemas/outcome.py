"""Plain values that validators return: a canonical event, or the reasons it is not one.

Frozen msgspec Structs rather than frozen dataclasses: one is built per event at
the door and in the stream, and a Struct is built in ~0.07 µs against ~0.9 µs.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class Violation(msgspec.Struct, frozen=True, gc=False):
    """One reason an event was rejected: machine code, JSON path, human message."""

    code: str
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}


MAX_VIOLATIONS = 20
"""Reasons kept for one event: past these, one `too_many_violations` says how many more."""


def capped(violations: list[Violation], path: str = "$") -> tuple[Violation, ...]:
    """The first `MAX_VIOLATIONS` of `violations`, then one reason counting the rest: what
    one bad event costs in answers and dead letters stays bounded (a CSV row of 256
    columns, a DataHub event of 1,000 dimensions)."""
    if len(violations) <= MAX_VIOLATIONS:
        return tuple(violations)
    more = len(violations) - MAX_VIOLATIONS
    summary = Violation("too_many_violations", path, f"{more} more violations not listed")
    return (*violations[:MAX_VIOLATIONS], summary)


class ValidEvent(msgspec.Struct, frozen=True, gc=False):
    """A validated event before the pipeline gives it a version.

    `event_id` is None when the body carried none (the door assigns one).
    `data_json` is the payload object as JSON text. `attributes_json` is set for a
    CloudEvent: its attributes Sluice has no column for, as a JSON object text
    (`schemas.cloudevents`). `schema_id` is the registry id of the data contract the event
    satisfied (`schemas.contracts`), None when its subject has none.
    """

    event_id: str | None
    type: str
    source: str
    subject: str | None
    time: datetime
    data_json: str
    attributes_json: str | None = None
    schema_id: int | None = None


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """An event that failed validation, with every reason found."""

    violations: tuple[Violation, ...]
    event_id: str | None = None


Outcome = ValidEvent | Rejected
