"""The sink reads a `CanonicalEvent` without fastavro's timestamp conversion: same rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import decode, decode_underlying, encode
from schemas.deletes import ORIGIN_HEADER, VERSION_HEADER, filter_key
from schemas.identity import Identity
from sinks.records import SINK_ORIGIN, event_record
from sinks.rows import EventRow, FilterRow, TombstoneRow, decoded

_times = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300)
@given(
    time=_times,
    received_at=_times,
    subject=st.none() | st.text(max_size=5),
    version=st.integers(0, 2**63 - 1),
    from_sink=st.booleans(),
)
def test_a_canonical_event_reads_as_fastavro_with_logical_types_reads_it(
    time: datetime, received_at: datetime, subject: str | None, version: int, from_sink: bool
) -> None:
    record: dict[str, Any] = {
        "tenant": "t", "family": "native", "event_id": "é-1", "type": "x", "source": "s",
        "subject": subject, "time": time, "data_json": '{"a": [1, "\\u00e9"]}',
        "received_at": received_at, "version": version,
    }  # fmt: skip
    value = encode("CanonicalEvent", record)
    headers: list[tuple[str, str | bytes | None]] | None = (
        [(ORIGIN_HEADER, SINK_ORIGIN)] if from_sink else None
    )
    msg = Message(topic="events", partition=3, offset=7, key=b"k", value=value, headers=headers)
    read = event_record(msg)
    assert read is not None and not isinstance(read, TombstoneRow | FilterRow)
    row = decoded(read)  # the compiled reader's EncodedEvent, its columns read back
    assert row == EventRow.from_record(decode(value)[1], 3, from_sink=from_sink)
    assert row.time == time and row.time.tzinfo is UTC
    assert read.received_at == received_at and read.received_at.tzinfo is UTC


def test_only_the_current_schema_is_read_without_logical_types() -> None:
    event = {
        "tenant": "t", "family": "native", "event_id": "a", "type": "x", "source": "s",
        "subject": None, "time": datetime(2024, 1, 1, tzinfo=UTC), "data_json": "{}",
        "received_at": datetime(2024, 1, 1, tzinfo=UTC), "version": 1,
    }  # fmt: skip
    underlying = decode_underlying(encode("CanonicalEvent", event), "CanonicalEvent")
    assert underlying is not None and underlying["time"] == 1_704_067_200_000_000
    flt = {
        "deletion_id": "d", "tenant": "t", "family": "native", "version": 5,
        "requested_at": datetime(2024, 1, 1, tzinfo=UTC),
        "filter": {"types": [], "sources": [], "time_from": None, "time_to": None},
    }  # fmt: skip
    value = encode("FilterDeletion", flt)
    assert decode_underlying(value, "CanonicalEvent") is None  # another schema: `decode`
    assert decode_underlying(b"\x01" + value[1:], "CanonicalEvent") is None  # not ours
    assert decode_underlying(b"", "CanonicalEvent") is None
    msg = Message(topic="events", partition=1, value=value, key=filter_key("d"))
    assert isinstance(event_record(msg), FilterRow)
    key = Identity("t", "native", "a").key()
    tombstone = Message(topic="events", partition=1, key=key, headers=[(VERSION_HEADER, b"9")])
    row = event_record(tombstone)
    assert isinstance(row, TombstoneRow) and row.version == 9
