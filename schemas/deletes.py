"""Deletes by filter: what they match, and how they travel.

A delete by filter (a provider, all of a family, or the native type/source/time
filter) is written to every partition of `ingest.raw`. In each partition its
position is a version (see `schemas.versions`): it removes the tenant's events
of that family, in that partition, that match the filter and are older than
that version, including those still in the pipeline, and nothing accepted
after it. The stream forwards it to `events` as a `FilterDeletion` record
keyed by `filter_key(deletion_id)`, which can never be an identity's key
(tenants cannot start with `~`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FILTER_KEY_PREFIX = b"~deletion|"


@dataclass(frozen=True)
class DeleteFilter:
    """Which of a tenant's events of one family a delete covers.

    Empty `types` / `sources` and missing times match everything; several
    values of one field match any of them (DataHub deletes several providers
    at once). `time_from` is inclusive, `time_to` exclusive, like the reads.
    """

    types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    time_from: datetime | None = None
    time_to: datetime | None = None

    @property
    def is_all(self) -> bool:
        """Whether it covers every event of the family (and so its dead letters too)."""
        return not (self.types or self.sources or self.time_from or self.time_to)

    def matches(self, type_: str, source: str, time: datetime) -> bool:
        """Whether an event with these fields is covered."""
        return (
            (not self.types or type_ in self.types)
            and (not self.sources or source in self.sources)
            and (self.time_from is None or time >= self.time_from)
            and (self.time_to is None or time < self.time_to)
        )

    def to_record(self) -> dict[str, Any]:
        """The Avro `DeleteFilter` record."""
        return {
            "types": list(self.types),
            "sources": list(self.sources),
            "time_from": self.time_from,
            "time_to": self.time_to,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DeleteFilter:
        return cls(
            types=tuple(record["types"]),
            sources=tuple(record["sources"]),
            time_from=record["time_from"],
            time_to=record["time_to"],
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready description, for receipts."""
        return {
            "types": list(self.types),
            "sources": list(self.sources),
            "from": self.time_from.isoformat() if self.time_from else None,
            "to": self.time_to.isoformat() if self.time_to else None,
        }


def filter_key(deletion_id: str) -> bytes:
    """The `events` key of a filter deletion's record (never an identity's key)."""
    return FILTER_KEY_PREFIX + deletion_id.encode()


def is_filter_key(key: bytes | None) -> bool:
    return key is not None and key.startswith(FILTER_KEY_PREFIX)


def unique_ids(event_ids: Sequence[str]) -> list[str]:
    """`event_ids` without repeats, first occurrence order kept."""
    return list(dict.fromkeys(event_ids))


VERSION_HEADER = "sluice.version"
"""Header carrying a tombstone's version (a null value has no room for it)."""
DELETION_HEADER = "sluice.deletion"
"""Header naming the receipt of the delete a tombstone carries out, when it has one."""
REQUESTED_AT_HEADER = "sluice.requested_at"
"""Header with when the door accepted the delete (microseconds since the epoch, UTC)."""
ORIGIN_HEADER = "sluice.origin"
"""Header marking records the sink itself wrote to `events` (value `sink`)."""
