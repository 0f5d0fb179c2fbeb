"""The Avro codec: Confluent wire format over Sluice's local schema files.

A message is the magic byte 0, a 4-byte big-endian schema id, then the Avro
binary body. Schema ids come from `SCHEMA_IDS` below; every API process registers
these schemas with exactly these ids in Sluice's Schema Registry (`/schema-registry`,
`schemas/subjects.py`), so a Confluent consumer resolves every message's id there.

With an existing registry instead (`SLUICE_SCHEMA_REGISTRY_URL`), each process registers
the same schemas there at start-up (`runtime.registry_client`) and hands the ids it got to
`use_registry_ids`: from then on the process writes that registry's ids, and reads both
those and Sluice's own (messages written before the switch). Where the two registries
number different records alike, the record a topic carries (`expected`) decides.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
from collections.abc import Callable, Mapping
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
_written: dict[str, int] = dict(SCHEMA_IDS)
"""The id this process writes for each record: Sluice's own, or the external registry's."""
_headers: dict[str, bytes] = {name: _HEADER.pack(MAGIC, i) for name, i in SCHEMA_IDS.items()}
_external: dict[int, int] = {}
"""The external registry's id → the Sluice id of the same schema (empty: none in use)."""
IdResolver = Callable[[int], "int | None"]
"""Asks the external registry which of Sluice's schemas (its Sluice id) an id it gave is;
None: none of them. Raises `CodecError` when it cannot ask now (nothing is remembered)."""
_resolver: list[IdResolver] = []
_not_sluices: set[int] = set()
MAX_NOT_SLUICES = 1024
"""Ids the registry said are none of Sluice's schemas, remembered up to this many."""


def use_registry_ids(own_to_external: Mapping[int, int], resolve: IdResolver | None = None) -> None:
    """Write and read the external registry's ids: `own_to_external` maps each of Sluice's
    own ids (`SCHEMA_IDS`, `SUPERSEDED`) to the id that registry gave the same schema.
    Called once per process at start-up, before any message is encoded.

    `resolve` answers for an id met later that the mapping lacks, once per id: a registry
    may give one schema two ids (Apicurio 2.0 does when two processes register it at the
    same moment), so another process may write an id this one did not get."""
    known = set(own_schema_ids())
    if set(own_to_external) != known:
        raise ValueError(f"need an external id for each of Sluice's ids {sorted(known)}")
    use_own_ids()
    _external.update({ext: own for own, ext in own_to_external.items()})
    _resolver.extend([resolve] if resolve is not None else [])
    for name, own in SCHEMA_IDS.items():
        _written[name] = own_to_external[own]
        _headers[name] = _HEADER.pack(MAGIC, own_to_external[own])


def own_schema_ids() -> list[int]:
    """Every id Sluice writes or once wrote, in its own numbering."""
    return sorted({*_NAMES_BY_ID, *SUPERSEDED})


def use_own_ids() -> None:
    """Back to Sluice's own ids (as at import): for tests that switched registries."""
    _external.clear()
    _resolver.clear()
    _not_sluices.clear()
    _written.update(SCHEMA_IDS)
    _headers.update({name: _HEADER.pack(MAGIC, i) for name, i in SCHEMA_IDS.items()})


def written_ids() -> dict[str, int]:
    """The id this process writes for each record name."""
    return dict(_written)


def wire_header(name: str) -> bytes:
    """The five bytes that open every message of schema `name`: magic byte and schema id."""
    return _headers[name]


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
    if len(payload) < _HEADER.size or payload[: _HEADER.size] != _headers[name]:
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
    candidates = _own_ids(schema_id, expected)
    for own_id in candidates[:-1]:
        with contextlib.suppress(CodecError):
            return _decode_as(payload, own_id, expected)
    return _decode_as(payload, candidates[-1], expected)


def _decode_as(payload: bytes, own_id: int, expected: str | None) -> tuple[str, dict[str, Any]]:
    """The message read with the schema Sluice numbers `own_id`."""
    name, writer = _NAMES_BY_ID.get(own_id), None
    if name is None and own_id in SUPERSEDED:
        name, filename = SUPERSEDED[own_id]
        writer = _load_file(filename)
    if name is None:
        raise CodecError(f"unknown schema id {own_id}")
    if expected is not None and name != expected:
        raise CodecError(f"expected {expected}, got {name}")
    if writer is None:
        return name, _read_body(payload, name, load_schema(name), None)
    return name, _read_body(payload, name, writer, load_schema(name))


def _learn(schema_id: int) -> int | None:
    """The Sluice id of the registry's `schema_id`, asked once (`use_registry_ids`)."""
    if schema_id in _not_sluices:
        return None
    own = _resolver[0](schema_id)
    if own is None:
        if len(_not_sluices) < MAX_NOT_SLUICES:
            _not_sluices.add(schema_id)
        return None
    _external[schema_id] = own
    return own


def _record_of(own_id: int) -> str | None:
    if own_id in SUPERSEDED:
        return SUPERSEDED[own_id][0]
    return _NAMES_BY_ID.get(own_id)


def _own_ids(schema_id: int, expected: str | None) -> list[int]:
    """The Sluice ids a message's `schema_id` may name, best first: the external registry's
    schema, then Sluice's own of that number (a message written before the switch). Where
    the two name different records, those that are not `expected` drop out; with nothing
    expected (`events` carries two records) both are tried, the external's first."""
    external = _external.get(schema_id)
    if external is None and _resolver:
        try:
            external = _learn(schema_id)
        except CodecError:
            if _record_of(schema_id) is None:
                raise
    if external is None or external == schema_id or _record_of(schema_id) is None:
        return [schema_id if external is None else external]
    both = [external, schema_id]
    fitting = [i for i in both if expected is None or _record_of(i) == expected]
    return fitting or [external]


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
