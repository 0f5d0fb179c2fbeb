"""A sink batch cut at its deletes by filter, so each filter sees exactly what preceded it.

Within a stretch of records without a delete by filter, order does not matter:
versions decide (newest wins, deletes by id are kept). A delete by filter,
though, removes what *matched when it was accepted*: if a batch held an old
matching version, the filter, and a newer version, collapsing the two versions
first would hide from the filter that the identity matched, and its dead
letters would survive. So a batch is applied as segments, each ending with the
filters that follow its records, in consumption order (which is partition order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from sinks.rows import EventRow, FilterRow, TombstoneRow
from sinks.unstorable import EnvelopeReader
from sinks.writer import FirstWrites, WriteResult, write_dead_letters, write_events

Item = EventRow | TombstoneRow | FilterRow | dict[str, Any]
"""A decoded record: a version, a tombstone, a delete by filter, or a dead letter (dict)."""


@dataclass
class Segment:
    """Records up to and including one run of deletes by filter."""

    upserts: list[EventRow] = field(default_factory=list)
    tombstones: list[TombstoneRow] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    filters: list[FilterRow] = field(default_factory=list)


def add_to_segments(segments: list[Segment], item: Item) -> None:
    """Append `item`; a record after a delete by filter starts a new segment."""
    if not segments or (segments[-1].filters and not isinstance(item, FilterRow)):
        segments.append(Segment())
    seg = segments[-1]
    if isinstance(item, EventRow):
        seg.upserts.append(item)
    elif isinstance(item, TombstoneRow):
        seg.tombstones.append(item)
    elif isinstance(item, FilterRow):
        seg.filters.append(item)
    else:
        seg.dead_letters.append(item)


def write_segments(
    conn: psycopg.Connection[Any],
    segments: list[Segment],
    originals: EnvelopeReader | None = None,
    first_writes: FirstWrites | None = None,
) -> WriteResult:
    """Apply every segment in order inside the caller's transaction; what the deletes removed.

    `originals` reads back the bytes first received of versions PostgreSQL refuses;
    `first_writes` lets versions of identities not stored yet go by plain insert.
    """
    total = WriteResult()
    for seg in segments:
        total.add(write_events(
            conn, seg.upserts, seg.tombstones, originals=originals, first_writes=first_writes
        ))  # fmt: skip
        total.add(_dead_letters_then_filters(conn, seg))
    return total


def _dead_letters_then_filters(conn: psycopg.Connection[Any], seg: Segment) -> WriteResult:
    write_dead_letters(conn, seg.dead_letters)
    return write_events(conn, (), (), seg.filters)
