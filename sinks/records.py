"""Decoding one `events` record into what the writer applies.

`events` carries three kinds of record, told apart by value and key: a
`CanonicalEvent` (a version of an identity), a null value under an identity's
key (a tombstone, its version in a header), and a `FilterDeletion` (one
partition's copy of a delete by filter). A null value under a filter key is the
sink's own clean-up of an applied `FilterDeletion`; it needs nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from schemas.codec import decode, decode_underlying, wire_header
from schemas.deletes import (
    DELETION_HEADER,
    ORIGIN_HEADER,
    REQUESTED_AT_HEADER,
    VERSION_HEADER,
    is_filter_key,
)
from schemas.history import REPLAY_OF_HEADER, REQUEST_HEADER
from schemas.identity import Identity
from sinks.rows import EventRow, FilterRow, TombstoneRow, Version, moment

SINK_ORIGIN = b"sink"

try:  # Sluice's own extension (fastpath/): a current CanonicalEvent read in Rust
    from sluice_fastpath import EventReader
    from sluice_fastpath import canonical_event as _compiled_canonical_event
except ImportError:  # not built: every version is read by fastavro
    _compiled_canonical_event = None  # type: ignore[assignment]
    EventReader = None  # type: ignore[assignment,misc]

COMPILED = _compiled_canonical_event is not None
"""Whether the sink reads current `CanonicalEvent`s with the compiled reader."""

_ENCODED = (
    None
    if EventReader is None
    else EventReader(REQUEST_HEADER, REPLAY_OF_HEADER, ORIGIN_HEADER, SINK_ORIGIN, moment)
)
"""The compiled reader of versions into `EncodedEvent`s, with the headers `version_headers`
reads and the datetimes `EventRow.from_fields` makes."""


def message_header(msg: Message, name: str) -> bytes | None:
    """The value of header `name` of `msg`, or None."""
    raw: Any = msg.headers() or []
    for key, value in raw.items() if isinstance(raw, dict) else raw:
        if key == name:
            return value.encode() if isinstance(value, str) else value
    return None


def version_headers(msg: Message) -> tuple[bool, str | None, str | None]:
    """Of a version's headers, in one pass: whether the sink wrote it, its request, and the
    dead letter it replays."""
    raw: Any = msg.headers() or []
    own, request_id, replay_of = False, None, None
    for key, value in raw.items() if isinstance(raw, dict) else raw:
        if key == REQUEST_HEADER:
            request_id = _text(value)
        elif key == REPLAY_OF_HEADER:
            replay_of = _text(value)
        elif key == ORIGIN_HEADER:
            own = _text(value) == "sink"
    return own, request_id, replay_of


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def event_record(msg: Message) -> Version | TombstoneRow | FilterRow | None:
    """The row a message of `events` stands for (None: nothing to apply).

    Raises `CodecError` / `ValueError` for a record that cannot be read.
    """
    value = msg.value()
    key = msg.key()
    partition = int(msg.partition() or 0)
    if value is None:
        return None if is_filter_key(key) else tombstone_row(key or b"", msg)
    if _ENCODED is not None:  # the common case, compiled, its row encoded for COPY
        encoded = _ENCODED.read(value, wire_header("CanonicalEvent"), partition, msg.headers())
        if encoded is not None:
            return encoded
    if _compiled_canonical_event is not None:  # compiled, a value COPY would not take as is
        fields = _compiled_canonical_event(value, wire_header("CanonicalEvent"))
        if fields is not None:
            own, request_id, replay_of = version_headers(msg)
            return EventRow.from_fields(fields, partition, from_sink=own,
                                        request_id=request_id, replay_of=replay_of)  # fmt: skip
    underlying = decode_underlying(value, "CanonicalEvent")  # the common case, in Python
    if underlying is not None:
        own, request_id, replay_of = version_headers(msg)
        return EventRow.from_underlying(underlying, partition, from_sink=own,
                                        request_id=request_id, replay_of=replay_of)  # fmt: skip
    name, record = decode(value)
    if name == "CanonicalEvent":
        own, request_id, replay_of = version_headers(msg)
        return EventRow.from_record(record, partition, from_sink=own,
                                    request_id=request_id, replay_of=replay_of)  # fmt: skip
    if name == "FilterDeletion":
        return FilterRow.from_record(record, partition)
    raise ValueError(f"unexpected {name} on the events topic")


def tombstone_row(key: bytes, msg: Message) -> TombstoneRow:
    """A tombstone: identity from the key, version (required) and the rest from headers."""
    identity = Identity.from_key(key)
    version = message_header(msg, VERSION_HEADER)
    if version is None:
        raise ValueError("tombstone without a version header")
    deletion = message_header(msg, DELETION_HEADER)
    requested = message_header(msg, REQUESTED_AT_HEADER)
    return TombstoneRow(
        identity.tenant, identity.family, identity.event_id, int(version), msg.partition(),
        deletion.decode() if deletion else None,
        datetime.fromtimestamp(int(requested) / 1_000_000, UTC) if requested else None,
        message_header(msg, ORIGIN_HEADER) == SINK_ORIGIN,
    )  # fmt: skip
