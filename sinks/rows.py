"""Plain rows the sink writes, made from decoded Kafka records, and newest-wins within a batch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class EventRow:
    tenant: str
    family: str
    event_id: str
    type: str
    source: str
    subject: str | None
    time: datetime
    data_json: str
    received_at: datetime
    version: int

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> EventRow:
        return cls(
            r["tenant"], r["family"], r["event_id"], r["type"], r["source"], r["subject"],
            r["time"], r["data_json"], r["received_at"], r["version"],
        )  # fmt: skip

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.tenant, self.family, self.event_id)


@dataclass(frozen=True, slots=True)
class TombstoneRow:
    """A delete of one identity at `version`: rows older than it go, and stay gone."""

    tenant: str
    family: str
    event_id: str
    version: int

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.tenant, self.family, self.event_id)


R = TypeVar("R", EventRow, TombstoneRow)


def newest_wins(rows: Iterable[R]) -> list[R]:
    """Keep one row per identity: the one with the highest version."""
    best: dict[tuple[str, str, str], R] = {}
    for row in rows:
        held = best.get(row.identity)
        if held is None or held.version < row.version:
            best[row.identity] = row
    return list(best.values())
