"""'Newer' is defined once: later in the partition. And old envelopes still decode."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import SUPERSEDED, decode
from schemas.versions import MAX_INDEX, is_newer, position_of, version_of
from streams.process import version_of as reexported


@given(st.integers(0, 2**40), st.integers(0, MAX_INDEX), st.integers(0, 2**40),
       st.integers(0, MAX_INDEX))  # fmt: skip
def test_a_later_position_is_a_newer_version(o1: int, i1: int, o2: int, i2: int) -> None:
    v1, v2 = version_of(o1, i1), version_of(o2, i2)
    assert is_newer(v2, v1) == ((o2, i2) > (o1, i1))
    assert position_of(v1) == (o1, i1)


def test_the_index_must_fit_and_the_old_import_still_works() -> None:
    with pytest.raises(ValueError):
        version_of(1, MAX_INDEX + 1)
    assert reexported is version_of


def test_an_envelope_written_with_schema_id_1_decodes_into_the_current_record() -> None:
    import json
    from importlib import resources

    name, filename = SUPERSEDED[1]
    text = resources.files("schemas").joinpath("avro", filename).read_text("utf-8")
    old = fastavro.parse_schema(json.loads(text))
    envelope = {
        "request_id": "r", "tenant": "acme", "family": "native", "route": {},
        "content_type": "application/json", "received_at": datetime(2024, 1, 1, tzinfo=UTC),
        "items": [{"op": "upsert", "event_id": "a", "raw": b"{}", "attempt": 1,
                   "replay_of": None, "receipt_id": None}],
    }  # fmt: skip
    out = io.BytesIO()
    out.write(b"\x00\x00\x00\x00\x01")  # magic byte, then schema id 1
    fastavro.schemaless_writer(out, old, envelope)
    decoded_name, record = decode(out.getvalue(), "IngestEnvelope")
    assert decoded_name == name == "IngestEnvelope"
    assert record["items"][0]["delete_filter"] is None
    assert record["items"][0]["event_id"] == "a"


def test_a_canonical_event_written_with_schema_id_2_decodes_without_attributes() -> None:
    import json
    from importlib import resources

    name, filename = SUPERSEDED[2]
    text = resources.files("schemas").joinpath("avro", filename).read_text("utf-8")
    old = fastavro.parse_schema(json.loads(text))
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    event = {"tenant": "acme", "family": "native", "event_id": "a", "type": "t", "source": "s",
             "subject": None, "time": moment, "data_json": "{}", "received_at": moment,
             "version": 7}  # fmt: skip
    out = io.BytesIO()
    out.write(b"\x00\x00\x00\x00\x02")  # magic byte, then schema id 2
    fastavro.schemaless_writer(out, old, event)
    expected = {**event, "attributes_json": None, "schema_id": None}
    assert decode(out.getvalue(), "CanonicalEvent") == (name, expected)
