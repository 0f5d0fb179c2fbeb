"""Every example record of every schema survives the wire codec unchanged."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas.codec import SCHEMA_IDS, CodecError, decode, encode, load_schema

EXAMPLES = Path(str(resources.files("schemas").joinpath("examples")))


def _examples() -> list[tuple[str, Path]]:
    return sorted((p.parent.name, p) for p in EXAMPLES.glob("*/*.json"))


def _read_avro_json(name: str, path: Path) -> dict[str, Any]:
    records = list(fastavro.json_reader(io.StringIO(path.read_text()), load_schema(name)))
    assert len(records) == 1
    record: dict[str, Any] = records[0]
    return record


def test_every_schema_has_examples() -> None:
    assert {name for name, _ in _examples()} == set(SCHEMA_IDS)


@pytest.mark.parametrize(("name", "path"), _examples(), ids=lambda v: str(v))
def test_example_round_trips(name: str, path: Path) -> None:
    record = _read_avro_json(name, path)
    payload = encode(name, record)
    assert payload[0] == 0
    assert int.from_bytes(payload[1:5], "big") == SCHEMA_IDS[name]
    assert decode(payload) == (name, record)


def test_decode_rejects_wrong_schema_and_garbage() -> None:
    record = _read_avro_json("CanonicalEvent", EXAMPLES / "CanonicalEvent" / "usage.json")
    payload = encode("CanonicalEvent", record)
    with pytest.raises(CodecError):
        decode(payload, "DeadLetter")
    with pytest.raises(CodecError):
        decode(b"\x01" + payload[1:])
    with pytest.raises(CodecError):
        decode(payload[:5] + b"\xff")
    with pytest.raises(CodecError):
        decode(b"\x00\x00\x00\x00\x63" + payload[5:])


def test_encode_rejects_records_the_schema_refuses() -> None:
    with pytest.raises(CodecError):
        encode("CanonicalEvent", {"tenant": "acme"})
