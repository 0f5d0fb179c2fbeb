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


class ValidEvent(msgspec.Struct, frozen=True, gc=False):
    """A validated event before the pipeline gives it a version.

    `event_id` is None when the body carried none (the door assigns one).
    `data_json` is the payload object as JSON text.
    """

    event_id: str | None
    type: str
    source: str
    subject: str | None
    time: datetime
    data_json: str


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """An event that failed validation, with every reason found."""

    violations: tuple[Violation, ...]
    event_id: str | None = None


Outcome = ValidEvent | Rejected
