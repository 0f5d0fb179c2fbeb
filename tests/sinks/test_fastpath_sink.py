"""The sink's compiled `CanonicalEvent` reader (fastpath/src/sink.rs) is partial and exact:
whatever it answers, fastavro answers the same; whatever it cannot read exactly, it declines."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from confluent_kafka import Message
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.codec import SCHEMA_IDS, CodecError, decode_underlying, encode, wire_header
from schemas.topics import TopicNames
from sinks import records
from sinks.rows import EventRow

sluice_fastpath = pytest.importorskip("sluice_fastpath")
canonical_event = sluice_fastpath.canonical_event

HEAD = wire_header("CanonicalEvent")
FIELDS = ("tenant", "family", "event_id", "type", "source", "subject", "time", "data_json",
          "received_at", "version", "attributes_json", "schema_id")  # fmt: skip
LONGS = st.integers(-(2**63), 2**63 - 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def _written(record: dict[str, Any]) -> bytes:
    """`record` (times as int microseconds) in the current schema, as the stream writes it."""
    body = io.BytesIO()
    fastavro.schemaless_writer(body, _plain_schema(), record)
    return HEAD + body.getvalue()


def _plain_schema() -> Any:
    from schemas.codec import _without_logical_types  # the schema the sink reads with

    return _without_logical_types("CanonicalEvent")


def _python(payload: bytes) -> tuple[Any, ...] | None:
    """What the Python path reads: the record's values in schema order, or None if it raises."""
    try:
        record = decode_underlying(payload, "CanonicalEvent")
    except CodecError:
        return None
    return None if record is None else tuple(record[f] for f in FIELDS)


records_ = st.fixed_dictionaries({
    "tenant": TEXT, "family": TEXT, "event_id": TEXT, "type": TEXT, "source": TEXT,
    "subject": st.none() | TEXT, "time": LONGS, "data_json": TEXT, "received_at": LONGS,
    "version": LONGS, "attributes_json": st.none() | TEXT,
    "schema_id": st.none() | st.integers(-(2**31), 2**31 - 1),
})  # fmt: skip


@settings(max_examples=400)
@given(records_)
@example({"tenant": "", "family": "", "event_id": "", "type": "", "source": "", "subject": None,
          "time": -(2**63), "data_json": "", "received_at": 2**63 - 1, "version": 0,
          "attributes_json": None, "schema_id": None})  # fmt: skip
def test_every_current_record_is_read_as_fastavro_reads_it(record: dict[str, Any]) -> None:
    payload = _written(record)
    assert canonical_event(payload, HEAD) == _python(payload) == tuple(record[f] for f in FIELDS)


@settings(max_examples=600)
@given(records_, st.data())
def test_damaged_messages_are_declined_or_read_exactly(record: dict[str, Any], data: Any) -> None:
    """Any bytes changed, cut off or added: an answer, if any, is fastavro's answer."""
    payload = bytearray(_written(record))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(len(HEAD), len(payload) - 1))
        payload[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(HEAD), len(payload)))
    damaged = bytes(payload[:cut]) + data.draw(st.binary(max_size=4))
    compiled = canonical_event(damaged, HEAD)
    if compiled is not None:
        assert compiled == _python(damaged)


@given(st.binary(max_size=200))
def test_arbitrary_bodies_are_declined_or_read_exactly(body: bytes) -> None:
    compiled = canonical_event(HEAD + body, HEAD)
    if compiled is not None:
        assert compiled == _python(HEAD + body)


def _sample() -> dict[str, Any]:
    return {"tenant": "acme", "family": "native", "event_id": "e-1", "type": "t", "source": "s",
            "subject": "x", "time": 1, "data_json": "{}", "received_at": 2, "version": 3,
            "attributes_json": None, "schema_id": 9}  # fmt: skip


def test_what_fastavro_reads_differently_is_declined() -> None:
    payload = _written(_sample())
    assert canonical_event(payload, HEAD) is not None
    # fastavro ignores bytes after the record; this reader does not guess
    assert _python(payload + b"\x00") is not None
    assert canonical_event(payload + b"\x00", HEAD) is None
    # another schema id (an older CanonicalEvent, another record): the Python path decides
    other = b"\x00" + (SCHEMA_IDS["CanonicalEvent"] - 1).to_bytes(4, "big") + payload[len(HEAD) :]
    assert canonical_event(other, HEAD) is None
    # a varint past 64 bits: fastavro reads a Python int beyond a bigint
    record = _sample()
    body = _written(record)[len(HEAD) :]
    tenant_len = body.index(b"acme") - 1
    overlong = body[:tenant_len] + b"\x88" + b"\x80" * 9 + b"\x00" + body[tenant_len + 1 :]
    assert canonical_event(HEAD + overlong, HEAD) is None
    # ten bytes whose last carries bits past the 64th (the longest varint a long may take)
    lowest = _written({**record, "time": -(2**63)})  # zigzag 2**64 - 1: nine 0xff, then 0x01
    assert b"\xff" * 9 + b"\x01" in lowest and canonical_event(lowest, HEAD) is not None
    wide = lowest.replace(b"\xff" * 9 + b"\x01", b"\xff" * 9 + b"\x03")
    assert _python(wide) is not None  # fastavro reads it, as an int past 64 bits
    assert canonical_event(wide, HEAD) is None
    # text that is not UTF-8
    assert canonical_event(HEAD + body.replace(b"acme", b"ac\xffe"), HEAD) is None


def test_the_sink_reads_versions_with_the_compiled_reader_into_the_same_rows() -> None:
    assert records.COMPILED
    when = EPOCH + timedelta(microseconds=1_732_356_000_123_456)
    record = {**_sample(), "time": when, "received_at": when + timedelta(seconds=1)}
    payload = encode("CanonicalEvent", record)
    topics = TopicNames.for_prefix("")
    msg = Message(topic=topics.events, partition=3, offset=7, key=b"k", value=payload,
                  headers=[("sluice.request", b"r-1")])  # fmt: skip
    row = records.event_record(msg)
    underlying = decode_underlying(payload, "CanonicalEvent")
    assert underlying is not None
    expected = EventRow.from_underlying(underlying, 3, request_id="r-1")
    assert row == expected and isinstance(row, EventRow)
    assert row.time == when and row.schema_id == 9
