"""The Avro codec: Confluent wire format over Sluice's local schema files.

A message is the magic byte 0, a 4-byte big-endian schema id, then the Avro
binary body. Schema ids come from `SCHEMA_IDS` below; every API process registers
these schemas with exactly these ids in Sluice's Schema Registry (`/schema-registry`,
`schemas/subjects.py`), so a Confluent consumer resolves every message's id there.
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from importlib import resources
from typing import Any

import fastavro

MAGIC = 0
_HEADER = struct.Struct(">bI")

SCHEMA_IDS: dict[str, int] = {
    "IngestEnvelope": 4,
    "CanonicalEvent": 7,
    "DeadLetter": 3,
    "FilterDeletion": 5,
}
_FILES = {
    "IngestEnvelope": "ingest_envelope.avsc",
    "CanonicalEvent": "canonical_event.avsc",
    "DeadLetter": "dead_letter.avsc",
    "FilterDeletion": "filter_deletion.avsc",
}
SUPERSEDED: dict[int, tuple[str, str]] = {
    1: ("IngestEnvelope", "ingest_envelope.v1.avsc"),
    2: ("CanonicalEvent", "canonical_event.v1.avsc"),
    6: ("CanonicalEvent", "canonical_event.v2.avsc"),
}
"""Older writer schemas still readable: id → (record name, file). A message written with
one is read with Avro schema resolution into the current schema (new fields take their
defaults), so Kafka-native producers and messages already on a topic keep working."""
_NAMES_BY_ID = {v: k for k, v in SCHEMA_IDS.items()}


def wire_header(name: str) -> bytes:
    """The five bytes that open every message of schema `name`: magic byte and schema id."""
    return _HEADER.pack(MAGIC, SCHEMA_IDS[name])


class CodecError(ValueError):
    """Bytes that are not a Sluice Avro message, or a record its schema rejects."""


def _schema_json(filename: str) -> Any:
    return json.loads(resources.files("schemas").joinpath("avro", filename).read_text("utf-8"))


@cache
def _load_file(filename: str) -> Any:
    return fastavro.parse_schema(_schema_json(filename))


def load_schema(name: str) -> Any:
    """The parsed current Avro schema called `name` (one of `SCHEMA_IDS`)."""
    return _load_file(_FILES[name])


@cache
def _without_logical_types(name: str) -> Any:
    return fastavro.parse_schema(_drop_logical_types(_schema_json(_FILES[name])))


def _drop_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_drop_logical_types(v) for v in node]
    return node


def encode(name: str, record: dict[str, Any]) -> bytes:
    """Encode `record` with schema `name` in the Confluent wire format."""
    out = io.BytesIO()
    out.write(wire_header(name))
    try:
        fastavro.schemaless_writer(out, load_schema(name), record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CodecError(f"cannot encode {name}: {exc}") from exc
    return out.getvalue()


def decode_underlying(payload: bytes, name: str) -> dict[str, Any] | None:
    """The record of a message written with the current schema `name`, its logical types left
    as their underlying values (a `timestamp-micros` as int microseconds since the epoch);
    None when the message is not that (read it with `decode`).

    For a consumer's hot path: fastavro's timestamp conversion is ~1/3 of decoding a
    `CanonicalEvent` (6.1 µs against 4.0 without it). Raises `CodecError` like `decode`.
    """
    if len(payload) < _HEADER.size or _HEADER.unpack_from(payload) != (MAGIC, SCHEMA_IDS[name]):
        return None
    return _read_body(payload, name, _without_logical_types(name), None)


def decode(payload: bytes, expected: str | None = None) -> tuple[str, dict[str, Any]]:
    """Decode a wire-format message into (schema name, record).

    Raises `CodecError` for a wrong magic byte, an unknown schema id, a schema
    other than `expected`, or a body that does not parse.
    """
    if len(payload) < _HEADER.size:
        raise CodecError("message shorter than the wire-format header")
    magic, schema_id = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise CodecError(f"unknown magic byte {magic}")
    name = _NAMES_BY_ID.get(schema_id)
    writer = None
    if name is None and schema_id in SUPERSEDED:
        name, filename = SUPERSEDED[schema_id]
        writer = _load_file(filename)
    if name is None:
        raise CodecError(f"unknown schema id {schema_id}")
    if expected is not None and name != expected:
        raise CodecError(f"expected {expected}, got {name}")
    if writer is None:
        return name, _read_body(payload, name, load_schema(name), None)
    return name, _read_body(payload, name, writer, load_schema(name))


def _read_body(payload: bytes, name: str, writer: Any, reader: Any) -> dict[str, Any]:
    """The record after the wire-format header, read with `writer` (resolved to `reader`)."""
    body = io.BytesIO(payload)
    body.seek(_HEADER.size)
    try:
        record = fastavro.schemaless_reader(body, writer, reader)
    except (ValueError, TypeError, EOFError, IndexError, KeyError, StopIteration) as exc:
        raise CodecError(f"cannot decode {name}: {exc}") from exc
    if not isinstance(record, dict):
        raise CodecError(f"{name} did not decode to a record")
    return record


def schema_text(schema_id: int) -> str:
    """The Avro schema (JSON text) that Sluice writes, or once wrote, with `schema_id`."""
    if schema_id in SUPERSEDED:
        filename = SUPERSEDED[schema_id][1]
    else:
        filename = _FILES[_NAMES_BY_ID[schema_id]]
    return resources.files("schemas").joinpath("avro", filename).read_text("utf-8")
