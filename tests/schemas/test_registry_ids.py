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


def _with_id(payload: bytes, schema_id: int) -> bytes:
    return payload[:1] + schema_id.to_bytes(4, "big") + payload[5:]


def test_an_id_another_process_got_is_asked_of_the_registry_once() -> None:
    """A registry that gave one schema two ids (two first registrations side by side):
    this process got 1007 for the DeadLetter, another wrote 2007."""
    asked: list[int] = []

    def resolve(schema_id: int) -> int | None:
        asked.append(schema_id)
        return SCHEMA_IDS["DeadLetter"] if schema_id == 2007 else None

    record = _example("DeadLetter")
    codec.use_registry_ids(FAR, resolve)
    theirs = _with_id(encode("DeadLetter", record), 2007)
    assert decode(theirs, "DeadLetter") == ("DeadLetter", record)
    assert decode(theirs, "DeadLetter") == ("DeadLetter", record)
    with pytest.raises(CodecError, match="unknown schema id 3000"):
        decode(_with_id(theirs, 3000))
    with pytest.raises(CodecError):
        decode(_with_id(theirs, 3000))
    assert asked == [2007, 3000]  # each once, the answer remembered either way


def test_a_registry_that_cannot_answer_leaves_sluices_own_ids_readable() -> None:
    def unreachable(schema_id: int) -> int | None:
        raise CodecError(f"cannot ask about {schema_id}")

    record = _example("DeadLetter")
    before = encode("DeadLetter", record)  # Sluice's own id 3, not in FAR's ids
    codec.use_registry_ids(FAR, unreachable)
    assert decode(before, "DeadLetter") == ("DeadLetter", record)
    with pytest.raises(CodecError, match="cannot ask about 2007"):
        decode(_with_id(before, 2007), "DeadLetter")
