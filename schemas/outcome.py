"""Plain values that validators return: a canonical event, or the reasons it is not one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason an event was rejected: machine code, JSON path, human message."""

    code: str
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}


@dataclass(frozen=True, slots=True)
class ValidEvent:
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


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that failed validation, with every reason found."""

    violations: tuple[Violation, ...]
    event_id: str | None = None


Outcome = ValidEvent | Rejected
