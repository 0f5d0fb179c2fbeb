"""The sink's compiled `CanonicalEvent` reader (fastpath/src/sink.rs) is partial and exact:
whatever it answers, fastavro answers the same; whatever it cannot read exactly, it declines."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fastavro
import psycopg
import pytest
from confluent_kafka import Message
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg._copy_base import format_row_binary
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.pq import Format

from schemas.codec import SCHEMA_IDS, CodecError, decode_underlying, encode, wire_header
from schemas.deletes import ORIGIN_HEADER
from schemas.history import REPLAY_OF_HEADER, REQUEST_HEADER
from schemas.topics import TopicNames
from sinks import records
from sinks.bulk import EVENT_TYPES, JsonTextBinaryDumper, copy_event_rows
from sinks.rows import EventRow, decoded, moment

sluice_fastpath = pytest.importorskip("sluice_fastpath")
canonical_event = sluice_fastpath.canonical_event
EventReader = sluice_fastpath.EventReader
EncodedEvent = sluice_fastpath.EncodedEvent

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
    assert isinstance(row, EncodedEvent)
    assert decoded(row) == expected and row.received_at == expected.received_at
    assert (row.tenant, row.event_id, row.version, row.partition) == ("acme", "e-1", 3, 3)
    assert row.identity == expected.identity and row.request_id == "r-1" and not row.from_sink
    assert decoded(row).time == when and decoded(row).schema_id == 9


def _psycopg_row(row: EventRow) -> bytes:
    """The binary COPY tuple psycopg's `write_row` makes of `row` in `copy_event_rows`."""
    adapters = AdaptersMap(psycopg.adapters)
    jsonb = type("JsonbText", (JsonTextBinaryDumper,), {"oid": adapters.types["jsonb"].oid})
    adapters.register_dumper(None, jsonb)
    tx = Transformer(SimpleNamespace(adapters=adapters, connection=None))  # type: ignore[arg-type]
    tx.set_dumper_types([adapters.types[t].oid for t in (*EVENT_TYPES, "int4")], Format.BINARY)
    out = bytearray()
    format_row_binary((row.tenant, row.family, row.event_id, row.type, row.source, row.subject,
                       row.time, row.data_json, row.received_at, row.version, row.attributes_json,
                       row.schema_id, row.partition), tx, out)  # fmt: skip
    return bytes(out)


READER = EventReader(REQUEST_HEADER, REPLAY_OF_HEADER, ORIGIN_HEADER, records.SINK_ORIGIN, moment)


def _encoded(payload: bytes, partition: int = 0, headers: Any = None) -> Any:
    return READER.read(payload, HEAD, partition, headers)


TIMES = st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)
"""The microseconds a datetime holds (years 1 to 9999): what the Python path can store."""

stored_records = records_.map(dict).flatmap(
    lambda r: st.fixed_dictionaries({"time": TIMES, "received_at": TIMES}).map(lambda t: {**r, **t})
)


@settings(max_examples=400)
@given(stored_records, st.integers(0, 2**31 - 1), st.booleans(), st.none() | TEXT)
@example({**_sample(), "time": -62_135_596_800_000_000, "received_at": 253_402_300_799_999_999},
         0, False, None)  # fmt: skip
def test_an_encoded_row_is_the_bytes_psycopg_makes_of_the_python_paths_row(
    record: dict[str, Any], partition: int, from_sink: bool, request: str | None
) -> None:
    payload = _written(record)
    headers = [(ORIGIN_HEADER, b"sink")] if from_sink else []
    headers += [] if request is None else [(REQUEST_HEADER, request.encode())]
    encoded = _encoded(payload, partition, headers)
    fields = canonical_event(payload, HEAD)
    assert encoded is not None and fields is not None
    python = EventRow.from_fields(fields, partition, from_sink=from_sink, request_id=request)
    assert encoded.row == _psycopg_row(python)
    assert encoded.fields() == fields and decoded(encoded) == python
    assert encoded.received_at == python.received_at and encoded.identity == python.identity


@given(records_, st.integers(0, 2**31 - 1))
def test_what_the_python_path_could_not_store_is_not_encoded(
    record: dict[str, Any], partition: int
) -> None:
    """A time no datetime holds, a schema id past int4: declined, and the Python path raises
    or lets PostgreSQL refuse, as it did before."""
    payload = _written(record)
    encoded = _encoded(payload, partition)
    try:
        python = EventRow.from_fields(canonical_event(payload, HEAD), partition)  # type: ignore[arg-type]
    except OverflowError:
        assert encoded is None
        return
    assert (encoded is None) == (python.schema_id is not None and python.schema_id >= 2**31)
    if encoded is not None:
        assert encoded.row == _psycopg_row(python)


def test_an_encoded_version_is_not_walked_by_the_cycle_collector() -> None:
    """Tens of thousands are in flight in a busy sink; tracked, they were most of what each
    full collection walked. Its fields cannot hold a reference cycle, and still read back."""
    encoded = _encoded(_written(_sample()), 3, [(REQUEST_HEADER, b"req-1")])
    assert encoded is not None and not gc.is_tracked(encoded)
    gc.collect()
    assert encoded.partition == 3 and encoded.request_id == "req-1"
    assert encoded.fields() == canonical_event(_written(_sample()), HEAD)


def test_times_one_past_a_datetimes_range_are_declined() -> None:
    for time in (-62_135_596_800_000_001, 253_402_300_800_000_000):
        for field in ("time", "received_at"):
            payload = _written({**_sample(), field: time})
            assert _encoded(payload) is None
            with pytest.raises(OverflowError):
                moment(time)


def test_a_batch_of_encoded_rows_is_stored_as_the_python_paths_rows_are(
    database_url: str,
) -> None:
    """One block of encoded rows and the same rows formatted by psycopg land alike."""
    samples = [{**_sample(), "event_id": f"e-{i}", "subject": None if i % 2 else "s",
                "data_json": f'{{"n": {i}, "t": "\u00e9\\n"}}', "attributes_json":
                '{"k": 1}' if i % 3 else None, "schema_id": None if i % 5 else i,
                "time": 1_700_000_000_000_000 + i} for i in range(50)]  # fmt: skip
    encoded = [_encoded(_written(r), 7) for r in samples]
    assert all(isinstance(e, EncodedEvent) for e in encoded)
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        tables = []
        python = [EventRow.from_fields(canonical_event(_written(r), HEAD), 7) for r in samples]  # type: ignore[arg-type]
        for rows in (encoded, python):
            table = f"fastpath_rows_{len(tables)}"
            cur.execute(f"CREATE TEMPORARY TABLE {table} (LIKE events INCLUDING DEFAULTS)")
            assert copy_event_rows(cur, table, rows, with_partition=True) == 50  # type: ignore[arg-type]
            tables.append(table)
        diff = cur.execute(f"SELECT * FROM {tables[0]} EXCEPT ALL SELECT * FROM {tables[1]}")
        assert diff.fetchall() == []
        stored = cur.execute(f"SELECT count(*), count(subject), count(attributes) FROM {tables[0]}")
        assert stored.fetchone() == (50, 25, 33)


HEADER_VALUES = st.none() | st.binary(max_size=6) | TEXT.map(str.encode) | st.just(b"sink") | TEXT
HEADERS = st.none() | st.lists(st.tuples(
    st.sampled_from([REQUEST_HEADER, REPLAY_OF_HEADER, ORIGIN_HEADER, "other"]), HEADER_VALUES
), max_size=5)  # fmt: skip


@settings(max_examples=400)
@given(HEADERS)
def test_headers_are_read_as_version_headers_reads_them_or_declined(headers: Any) -> None:
    """Each name's last value wins; text values and bytes that are not UTF-8 (which the
    Python path decodes with replacement) are declined, and only those."""
    payload = _written(_sample())
    msg = Message(topic="events", partition=1, offset=0, key=b"k", value=payload, headers=headers)
    encoded = _encoded(payload, 1, msg.headers())
    wanted = [v for n, v in headers or [] if n != "other"]
    plain = all(v is None or (isinstance(v, bytes) and _is_utf8(v)) for v in wanted)
    assert (encoded is not None) == plain
    if encoded is not None:
        assert (encoded.from_sink, encoded.request_id, encoded.replay_of) == (
            records.version_headers(msg)
        )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


_THREADS_READING = """
import sys, threading, time
from sinks import records
from tests.sinks.test_fastpath_sink import HEAD, _written

def slow_moment(at):  # lets Python switch threads inside the callback, as any call may
    time.sleep(0)
    return records.moment(at)

reader = records.EventReader("r", "p", "o", b"sink", slow_moment)
payloads = [_written({
    "tenant": "t", "family": "native", "event_id": str(n), "type": "a", "source": "s",
    "subject": None, "time": 0, "data_json": "{}", "received_at": n, "version": n,
    "attributes_json": None, "schema_id": None,
}) for n in range(400)]  # each a new received time: `moment` is called for every one

def read():
    for _ in range(50):
        for payload in payloads:
            assert reader.read(payload, HEAD, 0, None) is not None

threads = [threading.Thread(target=read) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("read", file=sys.stderr)
"""


@pytest.mark.skipif(not records.COMPILED, reason="the extension is not built")
def test_one_reader_serves_two_threads_without_a_deadlock() -> None:
    """The sink's lanes share one `EventReader`: a thread switch inside `moment` must not
    leave the other thread waiting on the reader's lock while it holds the GIL."""
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_READING], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "read" in done.stderr
