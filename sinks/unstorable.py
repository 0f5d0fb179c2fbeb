"""Dead letters for the versions PostgreSQL refuses (stage `sink`), with the bytes first received.

A version on `events` that Sluice's stream wrote carries its position on `ingest.raw`
(`version = offset << INDEX_BITS | index`, `schemas.versions`) and sits on the same
partition number there. So the event's original bytes are item `index` of the
`IngestEnvelope` at that offset, and invariant 2 (docs/design.md: dead letters byte for byte
as they arrived) holds for stage `sink` too: the sink reads those envelopes back, on this rare
path only, through an injected `EnvelopeReader` (Kafka stays out of the writer).

When they cannot be had (the record is gone with retention, the topic was deleted, the
read timed out, the bytes there are not an envelope, or the item there is another event:
a version some other producer wrote to `events`), `raw` is the version written back as
a native JSON event, as before, and the dead letter says so with a second reason,
`raw_reconstructed`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from schemas.codec import CodecError, decode
from schemas.deadletter import Origin, dead_letter_record
from schemas.outcome import Violation
from schemas.versions import position_of
from sinks.rows import EventRow

log = logging.getLogger(__name__)

SINK_NAMESPACE = uuid.UUID("5b1c0a52-8d7e-4a53-9f0e-2f4c6d3e1a77")
"""Namespace of the ids of dead letters the sink makes: fixed by identity and version."""

RECONSTRUCTED = "raw_reconstructed"
"""Reason code of a sink dead letter whose `raw` is not the bytes first received."""

Position = tuple[int, int]
"""(partition, offset) of an envelope on `ingest.raw`."""


@dataclass(frozen=True)
class Unavailable:
    """Why the message at a position of `ingest.raw` could not be read."""

    reason: str


class EnvelopeReader(Protocol):
    """Reads messages of `ingest.raw` back by position (see `sinks.ingest_reader`)."""

    @property
    def topic(self) -> str:
        """The physical name of the topic it reads."""
        ...

    def read(self, positions: Collection[Position]) -> Mapping[Position, bytes | Unavailable]:
        """The value at each position, or why it cannot be had; never raises for Kafka."""
        ...


@dataclass(frozen=True)
class OriginalItem:
    """An event's item as the door enveloped it, and the envelope's request metadata."""

    topic: str
    offset: int
    envelope: dict[str, Any]
    item: dict[str, Any]


def unstorable_dead_letters(
    refused: Sequence[tuple[EventRow, str]], reader: EnvelopeReader | None
) -> list[dict[str, Any]]:
    """Dead letters for `refused` (row, PostgreSQL's reason), reading their envelopes in one go."""
    if not refused:
        return []
    originals = find_originals([row for row, _ in refused], reader)
    return [unstorable_dead_letter(row, why, originals[_key(row)]) for row, why in refused]


def find_originals(
    rows: Sequence[EventRow], reader: EnvelopeReader | None
) -> dict[tuple[tuple[str, str, str], int], OriginalItem | str]:
    """Each row's original item, or why it could not be found; one read for all positions."""
    if reader is None:
        return {_key(r): "no reader of ingest.raw was given" for r in rows}
    positions = {_position(r) for r in rows if r.partition is not None}
    try:
        found = reader.read(positions)
    except Exception as exc:  # a failed read must not stop the sink: the fallback covers it
        log.exception("reading %d envelope(s) back from %s failed", len(positions), reader.topic)
        found = {p: Unavailable(f"reading failed: {type(exc).__name__}: {exc}") for p in positions}
    return {_key(r): original_item(r, reader.topic, found) for r in rows}


def original_item(
    row: EventRow, topic: str, found: Mapping[Position, bytes | Unavailable]
) -> OriginalItem | str:
    """`row`'s item in the envelope read at its position, or why that is not it."""
    if row.partition is None:
        return "the version has no partition"
    offset, index = position_of(row.version)
    where = f"{topic}[{row.partition}]@{offset}"
    value = found.get((row.partition, offset), Unavailable("not read"))
    if isinstance(value, Unavailable):
        return f"{where}: {value.reason}"
    try:
        _, envelope = decode(value, "IngestEnvelope")
    except CodecError as exc:
        return f"{where} is not an envelope: {exc}"
    items = envelope["items"]
    if index >= len(items):
        return f"{where} has {len(items)} item(s), none at index {index}"
    item = items[index]
    ours = (envelope["tenant"], envelope["family"], item["event_id"]) == row.identity
    if not ours or item["op"] != "upsert":
        return f"item {index} of {where} is not this event"
    return OriginalItem(topic, offset, envelope, item)


def unstorable_dead_letter(
    row: EventRow, reason: str, original: OriginalItem | str = "not looked up"
) -> dict[str, Any]:
    """A dead letter for a version PostgreSQL refused, its id fixed by identity and version so
    a redelivered batch records it once.

    With its `original` item, `raw` and the request's route, content type and lineage are
    the door's, as in a stream dead letter; otherwise (`original` says why not) `raw` is the
    version as a native event and reason `raw_reconstructed` marks it.
    """
    refused = Violation("unstorable", "$", reason)
    dead_letter_id = str(uuid.uuid5(SINK_NAMESPACE, f"{row.identity}/{row.version}"))
    if isinstance(original, OriginalItem):
        env, item = original.envelope, original.item
        origin = Origin(
            row.tenant, row.family, env["route"], env["content_type"], env["received_at"],
            attempt=item["attempt"], replay_of=_uuid_or_none(item["replay_of"]),
            source_topic=original.topic, source_partition=row.partition,
            source_offset=original.offset,
        )  # fmt: skip
        return dead_letter_record(
            raw=item["raw"], reasons=(refused,), origin=origin, stage="sink",
            event_id=row.event_id, dead_letter_id=dead_letter_id,
        )  # fmt: skip
    log.warning(
        "dead letter %s (%s version %d) holds the version re-serialised as a native event, "
        "not the bytes first received: %s", dead_letter_id, row.identity, row.version, original,
    )  # fmt: skip
    rebuilt = Violation(
        RECONSTRUCTED, "$",
        f"raw is this version written as a native event, not the bytes first received "
        f"({original})",
    )  # fmt: skip
    origin = Origin(
        row.tenant, row.family, {}, "application/json", row.received_at,
        source_partition=row.partition, source_offset=position_of(row.version)[0],
    )  # fmt: skip
    return dead_letter_record(
        raw=native_event(row), reasons=(refused, rebuilt), origin=origin, stage="sink",
        event_id=row.event_id, dead_letter_id=dead_letter_id,
    )  # fmt: skip


def native_event(row: EventRow) -> bytes:
    """The version as a native JSON event, its `data` kept as the text `events` carried."""
    head = json.dumps({
        "id": row.event_id, "type": row.type, "source": row.source, "subject": row.subject,
        "time": row.time.isoformat(),
    })  # fmt: skip
    return f'{head[:-1]}, "data": {row.data_json}}}'.encode(errors="replace")


def _position(row: EventRow) -> Position:
    return (row.partition or 0, position_of(row.version)[0])


def _key(row: EventRow) -> tuple[tuple[str, str, str], int]:
    return (row.identity, row.version)


def _uuid_or_none(text: str | None) -> str | None:
    """The replayed dead letter's id, if it is one (the column is a uuid; a malformed one
    from another producer must not make the dead letter unstorable in turn)."""
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
