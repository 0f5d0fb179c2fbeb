"""The door's hand-written envelope writer against fastavro: the same bytes for any envelope."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import decode, encode
from schemas.writers import (
    CanonicalEventWriter,
    encode_envelope,
    envelope_head,
    item,
    upsert_item,
    write_long,
)

_text = st.text(max_size=20)
_moment = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
_filter = st.fixed_dictionaries(
    {
        "types": st.lists(_text, max_size=3),
        "sources": st.lists(_text, max_size=3),
        "time_from": st.none() | _moment,
        "time_to": st.none() | _moment,
    }
)
_items = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["upsert", "delete"]),
        "event_id": _text,
        # Past 8 KiB the lengths are computed instead of looked up: cover both.
        "raw": st.binary(max_size=50) | st.binary(min_size=8190, max_size=8300),
        "attempt": st.integers(-(2**31), 2**31 - 1),
        "replay_of": st.none() | _text,
        "receipt_id": st.none() | _text,
        "delete_filter": st.none() | _filter,
    }
)
_envelopes = st.fixed_dictionaries(
    {
        "request_id": _text,
        "tenant": _text,
        "family": _text,
        "route": st.dictionaries(_text, _text, max_size=3),
        "content_type": _text,
        "received_at": _moment,
        "items": st.lists(_items, max_size=5),
    }
)


def _written(envelope: dict[str, Any]) -> bytes:
    head = envelope_head(
        envelope["request_id"], envelope["tenant"], envelope["family"], envelope["route"],
        envelope["content_type"], envelope["received_at"],
    )  # fmt: skip
    items = [_item(i) for i in envelope["items"]]
    return encode_envelope(head, items)


def _item(i: dict[str, Any]) -> bytes:
    return item(
        i["op"], i["event_id"], i["raw"], attempt=i["attempt"], replay_of=i["replay_of"],
        receipt_id=i["receipt_id"], delete_filter=i["delete_filter"],
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_envelopes)
def test_any_envelope_is_written_exactly_as_fastavro_writes_it(envelope: dict[str, Any]) -> None:
    assert _written(envelope) == encode("IngestEnvelope", envelope)


@settings(max_examples=200, deadline=None)
@given(_text, st.binary(max_size=40) | st.binary(min_size=8190, max_size=8250))
def test_a_fresh_upsert_item_matches_the_general_writer(event_id: str, raw: bytes) -> None:
    assert upsert_item(event_id.encode(), raw) == item("upsert", event_id, raw)


@given(st.integers(-(2**63), 2**63 - 1))
def test_any_long_is_written_as_fastavro_writes_it(value: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema("long"), value)
    assert write_long(value) == out.getvalue()


def test_an_envelope_decodes_to_what_was_written() -> None:
    moment = datetime(2026, 11, 23, 3, 0, 0, 123456, tzinfo=UTC)
    head = envelope_head("req", "acme", "native", {"service": "s3"}, "application/json", moment)
    message = encode_envelope(head, [upsert_item(b"e-1", b'{"a":1}'), upsert_item(b"e-2", b"{}")])
    record = decode(message, "IngestEnvelope")[1]
    assert record["received_at"] == moment
    assert record["route"] == {"service": "s3"}
    assert [(i["event_id"], i["raw"], i["attempt"]) for i in record["items"]] == [
        ("e-1", b'{"a":1}', 1),
        ("e-2", b"{}", 1),
    ]
    assert encode_envelope(head, []) == encode(
        "IngestEnvelope",
        {"request_id": "req", "tenant": "acme", "family": "native", "route": {"service": "s3"},
         "content_type": "application/json", "received_at": moment, "items": []},
    )  # fmt: skip


_canonical = st.fixed_dictionaries(
    {
        "tenant": _text,
        "family": _text,
        "event_id": _text,
        "type": _text,
        "source": _text,
        "subject": st.none() | _text,
        "time": _moment,
        "data_json": st.text(max_size=50) | st.text(min_size=8200, max_size=8300),
        "received_at": _moment,
        "version": st.integers(-(2**63), 2**63 - 1),
        "attributes_json": st.none() | _text,
        "schema_id": st.none() | st.integers(-(2**31), 2**31 - 1),
    }
)


@settings(max_examples=300, deadline=None)
@given(_canonical)
def test_any_canonical_event_is_written_exactly_as_fastavro_writes_it(
    record: dict[str, Any],
) -> None:
    writer = CanonicalEventWriter(record["tenant"], record["family"], record["received_at"])
    written = writer.encode(
        record["event_id"], record["type"], record["source"], record["subject"],
        record["time"], record["data_json"], record["version"], record["attributes_json"],
        record["schema_id"],
    )  # fmt: skip
    assert written == encode("CanonicalEvent", record)
    assert decode(written, "CanonicalEvent")[1] == record


@settings(max_examples=100, deadline=None)
@given(st.lists(_canonical, min_size=2, max_size=4))
def test_one_writer_per_envelope_writes_each_of_its_events_as_fastavro_does(
    records: list[dict[str, Any]],
) -> None:
    """The stream builds one `CanonicalEventWriter` per envelope (tenant, family and receive
    time encoded once) and writes every event of the envelope with it."""
    first = records[0]
    writer = CanonicalEventWriter(first["tenant"], first["family"], first["received_at"])
    for record in records:
        shared = {**record, "tenant": first["tenant"], "family": first["family"],
                  "received_at": first["received_at"]}  # fmt: skip
        written = writer.encode(
            shared["event_id"], shared["type"], shared["source"], shared["subject"],
            shared["time"], shared["data_json"], shared["version"], shared["attributes_json"],
            shared["schema_id"],
        )  # fmt: skip
        assert written == encode("CanonicalEvent", shared)


def test_messages_of_the_superseded_canonical_schemas_still_decode() -> None:
    """Events written before `schema_id` existed (id 6) and before `attributes_json` (id 2)
    decode into the current record with the new fields null."""
    base = {"tenant": "acme", "family": "native", "event_id": "e", "type": "t", "source": "s",
            "subject": None, "time": datetime(2026, 1, 1, tzinfo=UTC), "data_json": "{}",
            "received_at": datetime(2026, 1, 1, tzinfo=UTC), "version": 7}  # fmt: skip
    for schema_id, filename, record in (
        (6, "canonical_event.v2.avsc", {**base, "attributes_json": None}),
        (2, "canonical_event.v1.avsc", base),
    ):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, _old_schema(filename), record)
        payload = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
        assert decode(payload, "CanonicalEvent")[1] == {
            **base,
            "attributes_json": None,
            "schema_id": None,
        }


def _old_schema(filename: str) -> Any:
    text = resources.files("schemas").joinpath("avro", filename).read_text("utf-8")
    return fastavro.parse_schema(json.loads(text))
