"""The stream names each version's request (and replayed dead letter) in headers, and the
sink reads them back: what `event_history` and `ingest_envelopes` are built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeGuard

from confluent_kafka import Message

from schemas.codec import decode
from schemas.history import REPLAY_OF_HEADER, REQUEST_HEADER
from schemas.topics import TopicNames
from sinks.history import envelopes_of
from sinks.records import event_record
from sinks.rows import FilterRow, TombstoneRow, Version
from streams.outputs import to_messages
from streams.process import Position, process_envelope

AT = Position("t.ingest.raw", 2, 40)
GOOD = b'{"type":"t","source":"s","time":"2024-01-01T00:00:00Z","data":{"v":1}}'
TOPICS = TopicNames.for_prefix("t.")


def _envelope(request_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": request_id, "tenant": "acme", "family": "native", "route": {},
        "content_type": "application/json", "received_at": datetime(2024, 1, 1, tzinfo=UTC),
        "items": list(items),
    }  # fmt: skip


def _item(event_id: str, raw: bytes, replay_of: str | None = None) -> dict[str, Any]:
    return {"op": "upsert", "event_id": event_id, "raw": raw, "attempt": 1,
            "replay_of": replay_of, "receipt_id": None}  # fmt: skip


def _as_read(out: tuple[Any, ...]) -> Message:
    topic, partition, key, value, headers = out
    return Message(topic=topic, partition=partition, offset=1, key=key, value=value,
                   headers=list(headers) if headers else None)  # fmt: skip


def test_versions_and_dead_letters_carry_their_request() -> None:
    replayed = "6b3f3c52-52a4-4d6e-9b52-6f1c1c0de5a1"
    envelope = _envelope("req-7", _item("a", GOOD), _item("b", GOOD, replayed),
                         _item("c", b'{"type": 7}'))  # fmt: skip
    messages = to_messages(process_envelope(envelope, AT), 2, TOPICS)
    versions = [m for m in messages if m[0] == TOPICS.events]
    (dead,) = [m for m in messages if m[0] == TOPICS.dlq]
    assert [dict(m[4] or []) for m in versions] == [
        {REQUEST_HEADER: b"req-7"},  # the envelope's first version names the request
        {REPLAY_OF_HEADER: replayed.encode()},  # the others only what is theirs
    ]
    assert dict(dead[4] or [])[REQUEST_HEADER] == b"req-7"

    rows = [event_record(_as_read(m)) for m in versions]
    assert all(_is_version(r) for r in rows)
    assert [(r.request_id, r.replay_of) for r in rows if _is_version(r)] == [
        ("req-7", None), (None, replayed)
    ]  # fmt: skip
    assert decode(dead[3], "DeadLetter")[1]["event_id"] == "c"


def _is_version(row: object) -> TypeGuard[Version]:
    """Whether the sink read `row` as a version (an `EventRow` or a compiled `EncodedEvent`)."""
    return row is not None and not isinstance(row, TombstoneRow | FilterRow)


def test_the_sink_records_one_envelope_row_per_request_and_position() -> None:
    one = process_envelope(_envelope("req-1", _item("a", GOOD), _item("b", GOOD)), AT)
    later = Position(AT.topic, AT.partition, 41)
    two = process_envelope(_envelope("req-2", _item("a", GOOD)), later)
    messages = [*to_messages(one, 2, TOPICS), *to_messages(two, 2, TOPICS)]
    rows = [event_record(_as_read(m)) for m in messages]
    envelopes = envelopes_of([r for r in rows if _is_version(r)])
    assert [(key[2], key[3], request, ids) for key, (request, ids) in envelopes.items()] == [
        (2, 40, "req-1", ["a", "b"]), (2, 41, "req-2", ["a"])
    ]  # fmt: skip


def test_only_an_envelopes_first_version_carries_its_request() -> None:
    """The header costs the sink ~2 µs per version it is on: one per envelope."""
    envelope = _envelope("req-3", *(_item(f"e{i}", GOOD) for i in range(5)))
    versions = [m for m in to_messages(process_envelope(envelope, AT), 2, TOPICS)
                if m[0] == TOPICS.events]  # fmt: skip
    assert [m[4] for m in versions] == [[(REQUEST_HEADER, b"req-3")], None, None, None, None]


def test_an_envelope_split_across_batches_keeps_its_ids_and_the_first_its_request() -> None:
    envelope = _envelope("req-4", *(_item(f"e{i}", GOOD) for i in range(4)))
    messages = to_messages(process_envelope(envelope, AT), 2, TOPICS)
    rows = [r for r in (event_record(_as_read(m)) for m in messages) if _is_version(r)]
    first, second = envelopes_of(rows[:2]), envelopes_of(rows[2:])
    assert list(first.values()) == [("req-4", ["e0", "e1"])]
    assert list(second.values()) == [(None, ["e2", "e3"])]  # found by position when read
    assert list(first) == list(second)  # the same envelope: tenant, family, position
