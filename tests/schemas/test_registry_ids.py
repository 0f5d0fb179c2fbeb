"""With an external registry's ids installed, the codec writes them and reads both them and
Sluice's own (messages written before the switch), whichever the registry numbered alike."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas import codec
from schemas.codec import SCHEMA_IDS, CodecError, decode, decode_underlying, encode, load_schema
from schemas.writers import CanonicalEventWriter, encode_envelope, envelope_head

EXAMPLES = Path(str(resources.files("schemas").joinpath("examples")))

FAR = {1: 1001, 2: 1002, 3: 1003, 4: 1004, 5: 1005, 6: 1006, 7: 1007}
"""A registry whose ids never meet Sluice's own (another Sluice's tenant ids, say)."""
CLASHING = {1: 1, 4: 2, 2: 3, 6: 4, 7: 5, 5: 6, 3: 7}
"""A registry that numbers from 1 in registration order (ingest.raw, events, FilterDeletion,
events.dlq), as Apicurio does: most of its ids are Sluice's own ids of other records."""


@pytest.fixture(autouse=True)
def _own_ids_after() -> Iterator[None]:
    yield
    codec.use_own_ids()


def _example(name: str) -> dict[str, Any]:
    path = sorted((EXAMPLES / name).glob("*.json"))[0]
    records = list(fastavro.json_reader(io.StringIO(path.read_text()), load_schema(name)))
    record: dict[str, Any] = records[0]
    return record


def _schema_id(payload: bytes) -> int:
    assert payload[0] == 0
    return int.from_bytes(payload[1:5], "big")


@pytest.mark.parametrize("mapping", [FAR, CLASHING], ids=["far", "clashing"])
@pytest.mark.parametrize("name", sorted(SCHEMA_IDS))
def test_each_record_is_written_with_the_registrys_id_and_reads_back(
    name: str, mapping: dict[int, int]
) -> None:
    record = _example(name)
    codec.use_registry_ids(mapping)
    payload = encode(name, record)
    assert _schema_id(payload) == mapping[SCHEMA_IDS[name]]
    assert decode(payload, name) == (name, record)
    assert codec.written_ids()[name] == mapping[SCHEMA_IDS[name]]


@pytest.mark.parametrize("mapping", [FAR, CLASHING], ids=["far", "clashing"])
@pytest.mark.parametrize("name", ["IngestEnvelope", "DeadLetter", "CanonicalEvent"])
def test_a_message_written_with_sluices_own_id_before_the_switch_still_decodes(
    name: str, mapping: dict[int, int]
) -> None:
    record = _example(name)
    before = encode(name, record)
    codec.use_registry_ids(mapping)
    assert decode(before, name) == (name, record)


def test_a_clashing_id_is_read_as_the_record_the_topic_carries() -> None:
    """Own id 4 is the IngestEnvelope; the clashing registry gave 4 to CanonicalEvent v2."""
    envelope = encode("IngestEnvelope", _example("IngestEnvelope"))
    assert _schema_id(envelope) == 4
    codec.use_registry_ids(CLASHING)
    assert decode(envelope, "IngestEnvelope")[0] == "IngestEnvelope"
    assert decode(envelope)[0] == "IngestEnvelope"  # the registry's record did not parse
    with pytest.raises(CodecError, match="expected DeadLetter"):
        decode(envelope, "DeadLetter")


def test_the_envelope_and_event_writers_use_the_registrys_ids() -> None:
    codec.use_registry_ids(FAR)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    head = envelope_head("r1", "acme", "native", {}, "application/json", moment)
    assert _schema_id(encode_envelope(head, [])) == FAR[SCHEMA_IDS["IngestEnvelope"]]
    event = CanonicalEventWriter("acme", "native", moment)
    written = event.encode("e1", "usage", "src", None, moment, "{}", 1)
    assert _schema_id(written) == FAR[SCHEMA_IDS["CanonicalEvent"]]
    assert decode(written, "CanonicalEvent")[1]["event_id"] == "e1"
    assert decode_underlying(written, "CanonicalEvent") is not None


def test_the_fast_path_reads_only_the_id_this_process_writes() -> None:
    record = _example("CanonicalEvent")
    before = encode("CanonicalEvent", record)
    codec.use_registry_ids(FAR)
    assert decode_underlying(before, "CanonicalEvent") is None  # then decode() reads it
    assert decode_underlying(encode("CanonicalEvent", record), "CanonicalEvent") is not None


def test_an_incomplete_mapping_is_refused_and_own_ids_come_back() -> None:
    with pytest.raises(ValueError, match="external id for each"):
        codec.use_registry_ids({4: 1004})
    codec.use_registry_ids(FAR)
    codec.use_own_ids()
    assert _schema_id(encode("DeadLetter", _example("DeadLetter"))) == SCHEMA_IDS["DeadLetter"]
