"""A version PostgreSQL refuses becomes a dead letter; the sink's batch is stored without it.

Validation keeps such versions out of `events`, but the topic is a contract other
producers (or older Sluice releases) may write to: one refused row must not fail every
transaction holding it, which would stop the sink for every tenant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import Message, Producer

from ingest.plan import RequestContext, plan_events
from runtime.kafka import AsyncProducer, producer_config
from runtime.settings import Settings
from runtime.topic_admin import ensure_topics
from schemas.codec import decode, encode
from schemas.identity import Identity, partition_for
from schemas.topics import TopicNames
from schemas.validators import validator_for
from schemas.versions import version_of
from sinks import records
from sinks.consumer import Sink
from sinks.ingest_reader import IngestRawReader
from sinks.records import event_record
from sinks.rows import EventRow, FilterRow, TombstoneRow, Version
from sinks.unstorable import Position, Unavailable, unstorable_dead_letters
from sinks.writer import FirstWrites, write_dead_letters, write_events
from tests.conftest import eventually, make_settings

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _row(tenant: str, event_id: str, version: int, data_json: str = '{"n": 1}',
         type_: str = "t") -> EventRow:  # fmt: skip
    return EventRow(tenant, "native", event_id, type_, "s", None, T0, data_json, T0, version, 2)


def _as_read(row: EventRow) -> Version:
    """`row` as the sink reads it from `events`: the compiled reader's `EncodedEvent` when the
    extension is built (its row already encoded for COPY)."""
    record = {f: getattr(row, f) for f in ("tenant", "family", "event_id", "type", "source",
              "subject", "time", "data_json", "received_at", "version")}  # fmt: skip
    msg = Message(topic="events", partition=row.partition, offset=0, key=b"k",
                  value=encode("CanonicalEvent", record))  # fmt: skip
    read = event_record(msg)
    assert read is not None and not isinstance(read, TombstoneRow | FilterRow)
    return read


@pytest.mark.integration
@pytest.mark.parametrize("read", [False, True], ids=["decoded", "as-read"])
@pytest.mark.parametrize("first_writes", [False, True], ids=["staged", "copied-straight-first"])
def test_refused_versions_become_dead_letters_once_and_the_rest_is_stored(
    database_url: str, first_writes: bool, read: bool
) -> None:
    tenant = f"uns-{uuid.uuid4().hex[:8]}"
    decoded_rows = [
        _row(tenant, "good", 1 << 20),
        _row(tenant, "huge", 2 << 20, '{"n": 1e1000000}'),  # numeric overflow in jsonb
        _row(tenant, "nul", 3 << 20, type_="t\x00"),  # NUL in a text column
        _row(tenant, "also-good", (3 << 20) + 1),
    ]
    rows = [_as_read(r) for r in decoded_rows] if read else decoded_rows
    assert not read or not records.COMPILED or not any(isinstance(r, EventRow) for r in rows)
    with psycopg.connect(database_url) as conn:
        for _ in range(2):  # the second time is a redelivery of the same batch
            with conn.transaction():
                write_events(conn, rows, [], first_writes=FirstWrites() if first_writes else None)
        stored = conn.execute(
            "SELECT event_id FROM events WHERE tenant = %s ORDER BY event_id", (tenant,)
        ).fetchall()
        letters = conn.execute(
            "SELECT event_id, stage, reasons, raw, source_partition, source_offset"
            " FROM dead_letters WHERE tenant = %s ORDER BY event_id",
            (tenant,),
        ).fetchall()
    assert [r[0] for r in stored] == ["also-good", "good"]
    assert [(r[0], r[1], r[2][0]["code"]) for r in letters] == [
        ("huge", "sink", "unstorable"),
        ("nul", "sink", "unstorable"),
    ]
    huge = json.loads(letters[0][3].replace(b"1e1000000", b"0"))
    assert huge["id"] == "huge" and huge["type"] == "t"
    assert b"1e1000000" in letters[0][3]  # the refused value is kept as it was
    assert (letters[0][4], letters[0][5]) == (2, 2)  # position: partition, ingest.raw offset


@pytest.mark.integration
def test_a_dead_letter_whose_id_or_route_holds_nul_is_stored(database_url: str) -> None:
    """An event refused for a NUL in its id is dead-lettered with that id: the dead letter
    itself must still be storable (its raw bytes keep the NUL exactly)."""
    tenant = f"uns-{uuid.uuid4().hex[:8]}"
    raw = b'{"id": "a\\u0000b", "type": "t"}'
    record = {
        "dead_letter_id": str(uuid.uuid4()), "tenant": tenant, "family": "dashdive",
        "route": {"service": "s\x00"}, "content_type": "application/json", "raw": raw,
        "stage": "door", "received_at": T0, "event_id": "a\x00b", "attempt": 1,
        "reasons": [{"code": "unsupported_character", "path": "$", "message": "x\x00"}],
        "replay_of": None, "source_topic": None, "source_partition": None, "source_offset": None,
    }  # fmt: skip
    with psycopg.connect(database_url) as conn, conn.transaction():
        write_dead_letters(conn, [record])
        row = conn.execute(
            "SELECT event_id, route, reasons, raw FROM dead_letters WHERE tenant = %s", (tenant,)
        ).fetchone()
    assert row is not None
    assert row[0] == "a\ufffdb" and row[1] == {"service": "s\ufffd"}
    assert row[2][0]["message"] == "x\ufffd" and row[3] == raw


@pytest.mark.integration
def test_a_later_delete_removes_a_sink_dead_letter_and_an_earlier_one_does_not(
    database_url: str,
) -> None:
    """Invariant 4 for stage `sink`: its dead letters carry the version's position, so a
    delete accepted after the refused version removes it and one accepted before does not."""
    tenant = f"uns-{uuid.uuid4().hex[:8]}"
    refused = [
        _row(tenant, "late", 5 << 20, '{"n": 1e1000000}'),
        _row(tenant, "early", 5 << 20, '{"n": 1e1000000}'),
    ]
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            write_events(conn, refused, [])
        with conn.transaction():
            write_events(conn, [], [
                TombstoneRow(tenant, "native", "late", 6 << 20, 2),  # after the version
                TombstoneRow(tenant, "native", "early", 4 << 20, 2),  # before it
            ])  # fmt: skip
        left = conn.execute(
            "SELECT event_id FROM dead_letters WHERE tenant = %s AND stage = 'sink'", (tenant,)
        ).fetchall()
    assert [r[0] for r in left] == ["early"]


# Invariant 2 for stage `sink`: the dead letter holds the bytes the door received.


def _odd_raw(event_id: str) -> bytes:
    """A valid native event that no re-serialisation would reproduce byte for byte."""
    return (b'{ "data" : {"z": [ 1,2 ], "e":"\\u00e9"},\n\t"type":"t" ,"id":"'
            + event_id.encode() + b'", "source":"s","time":"2024-05-01T00:00:00Z"}  ')  # fmt: skip


def _ids_sharing_a_partition(tenant: str, partitions: int, count: int) -> list[str]:
    """`count` event ids whose identities fall in one partition (so they share an envelope)."""
    wanted = partition_for(Identity(tenant, "native", "x0").key(), partitions)
    ids = (f"x{i}" for i in range(10_000))
    same = (
        i for i in ids if partition_for(Identity(tenant, "native", i).key(), partitions) == wanted
    )
    return [next(same) for _ in range(count)]


async def _accepted(settings: Settings, ctx: RequestContext, raws: list[bytes]) -> dict[str, Any]:
    """Plan `raws` as the door does and produce them; each event id's (partition, version)."""
    topics = TopicNames.for_prefix(settings.topic_prefix)
    plan = plan_events(ctx, raws, validator_for("native"), topics, settings.partitions)
    assert plan.accepted == len(raws)
    producer = AsyncProducer(producer_config(settings))
    try:
        batch = producer.send_batch(plan.messages, record_offsets=True)
        await batch.wait()
    finally:
        producer.close()
    where = {}
    for topic, partition, _key, value, _headers in plan.messages:
        offset = batch.offsets[(topic, partition)]
        for index, item in enumerate(decode(value or b"", "IngestEnvelope")[1]["items"]):
            where[item["event_id"]] = (partition, version_of(offset, index))
    return where


def _refused_on_events(settings: Settings, tenant: str, event_id: str, at: tuple[int, int]) -> None:
    """The version at `at` as another producer might put it on `events`: data PostgreSQL refuses."""
    record = {
        "tenant": tenant, "family": "native", "event_id": event_id, "type": "t", "source": "s",
        "subject": None, "time": T0, "data_json": '{"n": 1e1000000}', "received_at": T0,
        "version": at[1],
    }  # fmt: skip
    producer = Producer(producer_config(settings))
    topic = TopicNames.for_prefix(settings.topic_prefix).events
    key = Identity(tenant, "native", event_id).key()
    producer.produce(topic, encode("CanonicalEvent", record), key, partition=at[0])
    assert producer.flush(30) == 0


@pytest.fixture
def running_sink(kafka_bootstrap: str, database_url: str) -> Iterator[tuple[Settings, Sink]]:
    """The sink's own consume → write → commit loop on fresh topics, for one test."""
    settings = make_settings(kafka_bootstrap, database_url)
    ensure_topics(settings)
    sink = Sink(settings)
    thread = threading.Thread(target=sink.run, name="test-sink", daemon=True)
    thread.start()
    yield settings, sink
    sink.stop()
    thread.join(30)
    assert not thread.is_alive()


@pytest.mark.integration
def test_the_sink_dead_letters_a_refused_version_with_the_bytes_the_door_received(
    running_sink: tuple[Settings, Sink], database_url: str
) -> None:
    (settings, sink), tenant = running_sink, f"uns-{uuid.uuid4().hex[:8]}"
    first, second, third = _ids_sharing_a_partition(tenant, settings.partitions, 3)
    raws = {first: _odd_raw(first), second: _odd_raw(second), third: _odd_raw(third)}
    route, content_type = {"via": "sink-test"}, "application/x-ndjson"
    ctx = RequestContext(tenant, "native", route, content_type, T0)
    where = asyncio.run(_accepted(settings, ctx, list(raws.values())))
    assert where[third][1] & 0xFFFFF == 2  # the third item of its envelope: the index counts
    for event_id in (second, third):  # two refused versions of one envelope, one batch
        _refused_on_events(settings, tenant, event_id, where[event_id])

    def letters() -> list[tuple[Any, ...]]:
        found = psycopg.connect(database_url, autocommit=True).execute(
            "SELECT event_id, raw, reasons, route, content_type, stage, received_at,"
            " source_topic, source_partition, source_offset FROM dead_letters"
            " WHERE tenant = %s ORDER BY event_id", (tenant,),
        ).fetchall()  # fmt: skip
        return found if len(found) == 2 else []

    stored = eventually(letters, timeout=60)
    topics = TopicNames.for_prefix(settings.topic_prefix)
    for event_id, raw, reasons, got_route, got_type, stage, received_at, *source in stored:
        partition, version = where[event_id]
        assert bytes(raw) == raws[event_id]  # byte for byte, whitespace, escapes and order
        assert [r["code"] for r in reasons] == ["unstorable"]  # nothing reconstructed
        assert (got_route, got_type, stage, received_at) == (route, content_type, "sink", T0)
        assert source == [topics.ingest_raw, partition, version >> 20]

    def refused(raw: str) -> float | None:
        registry = sink.monitor.registry
        return registry.get_sample_value("sluice_sink_unstorable_total", {"raw": raw})

    eventually(lambda: refused("original") == 2, timeout=30)  # counted once committed
    assert refused("reconstructed") == 0


@pytest.mark.integration
def test_a_version_whose_envelope_is_not_on_ingest_raw_keeps_a_marked_native_event(
    kafka_bootstrap: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(kafka_bootstrap, database_url)
    ensure_topics(settings)
    reader = IngestRawReader.from_settings(settings, TopicNames.for_prefix(settings.topic_prefix)
                                           .ingest_raw)  # fmt: skip
    tenant = f"uns-{uuid.uuid4().hex[:8]}"
    lost = _row(tenant, "lost", version_of(41, 3), '{"n": 1e1000000}')  # offset 41: never written
    with psycopg.connect(database_url) as conn, caplog.at_level(logging.WARNING):
        for _ in range(2):  # a redelivery still records it once
            with conn.transaction():
                result = write_events(conn, [lost], [], originals=reader)
            assert (result.refused, result.reconstructed) == (1, 1)  # what the sink counts
        letters = conn.execute(
            "SELECT raw, reasons, source_partition, source_offset FROM dead_letters"
            " WHERE tenant = %s", (tenant,),
        ).fetchall()  # fmt: skip
    [(raw, reasons, partition, offset)] = letters
    assert [r["code"] for r in reasons] == ["unstorable", "raw_reconstructed"]
    assert "not written (the partition ends at 0)" in reasons[1]["message"]
    assert json.loads(raw.replace(b"1e1000000", b"0"))["id"] == "lost"
    assert (partition, offset) == (2, 41)
    assert any("not the bytes first received" in r.getMessage() for r in caplog.records)


class _HeldEnvelopes:
    """An `EnvelopeReader` over messages held in memory: the item-picking logic is pure (the
    Kafka side, `IngestRawReader`, is tested on real Kafka in test_ingest_reader.py)."""

    topic = "t.ingest.raw"

    def __init__(self, messages: dict[Position, bytes], fails: bool = False) -> None:
        self.messages = messages
        self.fails = fails
        self.reads: list[set[Position]] = []

    def read(self, positions: Collection[Position]) -> dict[Position, bytes | Unavailable]:
        self.reads.append(set(positions))
        if self.fails:
            raise RuntimeError("boom")
        return {p: self.messages.get(p, Unavailable("absent")) for p in positions}


def _envelope(tenant: str, raws: list[bytes]) -> bytes:
    ctx = RequestContext(tenant, "native", {}, "application/json", T0)
    plan = plan_events(ctx, raws, validator_for("native"), TopicNames.for_prefix("t."), 1)
    [(_topic, _partition, _key, value, _headers)] = plan.messages
    return value or b""


def test_only_that_very_event_s_item_is_taken_and_each_envelope_is_read_once() -> None:
    """A version that does not point at its own item (another tenant's, a missing index,
    bytes that are no envelope) gets the marked fallback: never someone else's bytes."""
    envelope = _envelope("a", [_odd_raw("e0"), _odd_raw("e1")])
    held = _HeldEnvelopes({(2, 7): envelope, (2, 8): b"not avro"})
    refused = [
        (_row("a", "e1", version_of(7, 1)), "refused"),
        (_row("a", "e0", version_of(7, 5)), "refused"),  # no item 5
        (_row("b", "e1", version_of(7, 1)), "refused"),  # tenant b, a's item: invariant 5
        (_row("a", "e9", version_of(8, 0)), "refused"),
    ]
    letters = unstorable_dead_letters(refused, held)
    assert held.reads == [{(2, 7), (2, 8)}]
    assert letters[0]["raw"] == _odd_raw("e1") and len(letters[0]["reasons"]) == 1
    assert letters[0]["source_topic"] == "t.ingest.raw"
    for letter, why in zip(letters[1:], ("none at index 5", "is not this event",
                                         "is not an envelope"), strict=True):  # fmt: skip
        assert letter["reasons"][1]["code"] == "raw_reconstructed"
        assert why in letter["reasons"][1]["message"]
        assert b"\\u00e9" not in letter["raw"] and letter["source_topic"] is None
    ids = {letter["dead_letter_id"] for letter in letters}
    assert len(ids) == 4 and ids == {d["dead_letter_id"] for d in unstorable_dead_letters(
        refused, None)}  # fmt: skip


def test_a_reader_that_fails_leaves_the_marked_fallback_and_raises_nothing() -> None:
    held = _HeldEnvelopes({}, fails=True)
    [letter] = unstorable_dead_letters([(_row("a", "e1", version_of(3, 0)), "refused")], held)
    assert letter["reasons"][1]["code"] == "raw_reconstructed"
    assert "reading failed: RuntimeError: boom" in letter["reasons"][1]["message"]


def test_a_reconstructed_raw_keeps_every_field_whatever_text_it_holds() -> None:
    """The fallback writes the version as a native event around `data`'s own text; a field
    reading like a placeholder once had `data` substituted into it."""
    from sinks.unstorable import native_event

    moment = datetime(2024, 1, 1, tzinfo=UTC)
    row = EventRow("t", "native", "e1", "__DATA__", "s", None, moment, '{"n": 1e400}', moment, 7)
    raw = native_event(row)
    assert json.loads(raw)["type"] == "__DATA__"
    assert raw.endswith(b'"data": {"n": 1e400}}')  # data's text as `events` carried it
